//! The parser: text with `{!...}` parts to a folded tree, errors at a byte offset.
//!
//! Recursive descent over the bytes. Every syntactic token is ASCII, so byte offsets taken at
//! token starts always fall on character boundaries; non-ASCII text only ever appears inside
//! literals, which are copied as `str` slices.

use std::time::UNIX_EPOCH;

use super::eval::{self, Expr, Function, Part};
use super::names::{self, Builds};
use super::{Field, FormulaError};

pub(super) struct Parsed {
    pub(super) parts: Vec<Part>,
    pub(super) fields: Vec<Field>,
}

pub(super) fn parse(text: &str) -> Result<Parsed, FormulaError> {
    let mut parser = Parser {
        text,
        pos: 0,
        open: 0,
        fields: Vec::new(),
        depth: 0,
    };
    let mut parts = Vec::new();
    while let Some(found) = text[parser.pos..].find("{!") {
        let open = parser.pos + found;
        push_text(&mut parts, &text[parser.pos..open]);
        parser.open = open;
        parser.pos = open + 2;
        match parser.formula()? {
            // A constant part joins the text around it, so a value whose parts are all
            // constant ends up as one `Text`, which `Formula` keeps as its constant.
            Expr::Bytes(bytes) => match std::str::from_utf8(&bytes) {
                Ok(value) => push_text(&mut parts, value),
                Err(_) => return Err(error(open, NOT_TEXT)),
            },
            expr => parts.push(Part::Formula(expr)),
        }
    }
    push_text(&mut parts, &text[parser.pos..]);
    Ok(Parsed {
        parts,
        fields: parser.fields,
    })
}

const NOT_TEXT: &str =
    "this formula gives bytes that are not UTF-8 text; encode them with HEX(...) or BASE64ENCODE(...)";

fn push_text(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    match parts.last_mut() {
        Some(Part::Text(last)) => last.push_str(text),
        _ => parts.push(Part::Text(text.to_owned())),
    }
}

fn error(offset: usize, message: impl Into<String>) -> FormulaError {
    FormulaError {
        offset,
        message: message.into(),
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Where the current `{!` is, for "unclosed" errors.
    open: usize,
    fields: Vec<Field>,
    /// How many terms are being parsed, one inside the other.
    depth: usize,
}

/// Far beyond any real formula (an API signature nests four or five calls).
const MAX_DEPTH: usize = 64;

/// A parsed operand, with what the checks above it need to know.
struct Term {
    expr: Expr,
    /// The name and offset of an `HMAC` or `HASH` whose raw bytes would reach the value.
    raw: Option<(usize, &'static str)>,
    /// Whether it is one string literal (then `expr` is its `Bytes`): an algorithm must be.
    literal: bool,
}

impl Term {
    fn plain(expr: Expr) -> Term {
        Term {
            expr,
            raw: None,
            literal: false,
        }
    }
}

impl<'a> Parser<'a> {
    /// After `{!`, up to and including its `}`.
    fn formula(&mut self) -> Result<Expr, FormulaError> {
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            return Err(error(self.open, "empty formula `{!}`"));
        }
        let term = self.concat()?;
        self.skip_whitespace();
        self.expect(b'}', "`&`, `+` or `}`")?;
        // A digest is raw bytes: as a header value it is mojibake at best, so say how to
        // encode it rather than fail on every request. `TEXT(HMAC(...))` is still possible.
        if let Some((offset, name)) = term.raw {
            return Err(error(
                offset,
                format!("`{name}` gives raw bytes, not text; wrap it in HEX(...) or BASE64ENCODE(...)"),
            ));
        }
        Ok(term.expr)
    }

    /// `term { ("&" | "+") term }`, flattened, adjacent constants merged.
    fn concat(&mut self) -> Result<Term, FormulaError> {
        let first = self.term()?;
        let (mut raw, mut literal) = (first.raw, first.literal);
        let mut items = Vec::new();
        push_expr(&mut items, first.expr);
        loop {
            self.skip_whitespace();
            if !matches!(self.peek(), Some(b'&' | b'+')) {
                break;
            }
            self.pos += 1;
            let next = self.term()?;
            raw = raw.or(next.raw);
            literal = false;
            push_expr(&mut items, next.expr);
        }
        let expr = match items.len() {
            1 => items.pop().expect("one item"),
            _ => Expr::Concat(items),
        };
        Ok(Term { expr, raw, literal })
    }

    /// One operand, at most [`MAX_DEPTH`] calls and parentheses deep: the parser, the
    /// evaluator and the tree's drop all recurse, and a stack overflow would abort.
    fn term(&mut self) -> Result<Term, FormulaError> {
        self.skip_whitespace();
        if self.depth == MAX_DEPTH {
            return Err(error(
                self.pos,
                format!("formula nested more than {MAX_DEPTH} deep"),
            ));
        }
        self.depth += 1;
        let term = self.operand();
        self.depth -= 1;
        term
    }

    fn operand(&mut self) -> Result<Term, FormulaError> {
        let start = self.pos;
        match self.peek() {
            None => Err(self.unclosed()),
            Some(b'"') => Ok(Term {
                expr: Expr::Bytes(self.string()?.into_bytes()),
                raw: None,
                literal: true,
            }),
            Some(b'\'') => Err(error(start, "strings are in double quotes, not single quotes")),
            Some(b'$') => Ok(Term::plain(Expr::Field(self.field()?))),
            Some(b'(') => {
                self.pos += 1;
                let inner = self.concat()?;
                self.skip_whitespace();
                self.expect(b')', "`&`, `+` or `)`")?;
                Ok(Term {
                    literal: false,
                    ..inner
                })
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.call(),
            Some(_) => Err(self.unexpected("a string, merge field or function")),
        }
    }

    /// A double-quoted literal; `}` and `{!` inside are plain text.
    fn string(&mut self) -> Result<String, FormulaError> {
        let open = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(stop) = rest.find(['"', '\\']) else {
                return Err(error(open, "unterminated string"));
            };
            value.push_str(&rest[..stop]);
            self.pos += stop;
            if rest.as_bytes()[stop] == b'"' {
                self.pos += 1;
                return Ok(value);
            }
            match self.text[self.pos + 1..].chars().next() {
                Some(escaped @ ('"' | '\\')) => value.push(escaped),
                None => return Err(error(open, "unterminated string")),
                Some(other) => {
                    return Err(error(
                        self.pos,
                        format!(
                            "unknown escape `\\{}` in a string; the escapes are `\\\"` and `\\\\`",
                            shown(other)
                        ),
                    ));
                }
            }
            self.pos += 2;
        }
    }

    /// `$NAME { "." NAME }`, one token: no whitespace inside.
    fn field(&mut self) -> Result<Field, FormulaError> {
        let start = self.pos;
        self.pos += 1;
        let mut segments = Vec::new();
        loop {
            let name = self.name();
            if name.is_empty() {
                let message = if segments.is_empty() {
                    "expected a name after `$`"
                } else {
                    "expected a name after `.`"
                };
                return Err(error(self.pos, message));
            }
            segments.push(name);
            if self.peek() != Some(b'.') {
                break;
            }
            self.pos += 1;
        }
        let written = &self.text[start..self.pos];
        let field = names::resolve(written, &segments).map_err(|message| error(start, message))?;
        if !self.fields.contains(&field) {
            self.fields.push(field.clone());
        }
        Ok(field)
    }

    /// `NAME "(" [ concat { "," concat } ] ")"`.
    fn call(&mut self) -> Result<Term, FormulaError> {
        let start = self.pos;
        let name = self.name();
        let known = names::Signature::find(name);
        self.skip_whitespace();
        if self.peek() != Some(b'(') {
            let message = match known {
                Some(known) => format!("`{0}` is a function; call it as `{0}(...)`", known.name),
                None => format!(
                    "`{name}` is not a merge field, string or function; merge fields begin with `$`, strings are in double quotes"
                ),
            };
            return Err(error(start, message));
        }
        let Some(signature) = known else {
            return Err(error(start, names::unknown_function(name)));
        };
        self.pos += 1;
        let mut args = self.arguments()?;
        if args.len() != signature.params.len() {
            return Err(error(start, signature.arity_message(args.len())));
        }
        let (function, raw) = match signature.builds {
            Builds::Function(function) => (function, None),
            Builds::WithDigest(make) => {
                let (at, alg) = args.remove(0);
                // A literal's bytes came from a `str`, so the conversion loses nothing.
                let literal = match (&alg.expr, alg.literal) {
                    (Expr::Bytes(bytes), true) => Some(String::from_utf8_lossy(bytes)),
                    _ => None,
                };
                let digest = signature
                    .algorithm(literal.as_deref())
                    .map_err(|message| error(at, message))?;
                (make(digest), Some((start, signature.name)))
            }
        };
        let args: Vec<Expr> = args.into_iter().map(|(_, arg)| arg.expr).collect();
        Ok(Term {
            expr: fold(function, args, start)?,
            raw,
            literal: false,
        })
    }

    /// After a call's `(`, up to and including its `)`, with each argument's offset.
    fn arguments(&mut self) -> Result<Vec<(usize, Term)>, FormulaError> {
        let mut args = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            self.skip_whitespace();
            let at = self.pos;
            args.push((at, self.concat()?));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok(args);
                }
                _ => return Err(self.unexpected("`,` or `)`")),
            }
        }
    }

    /// `[A-Za-z0-9_]*`, borrowed from the text rather than the parser.
    fn name(&mut self) -> &'a str {
        let rest: &'a str = &self.text[self.pos..];
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        self.pos += len;
        &rest[..len]
    }

    fn skip_whitespace(&mut self) {
        let rest = &self.text.as_bytes()[self.pos..];
        self.pos += rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8, expected: &str) -> Result<(), FormulaError> {
        if self.peek() != Some(byte) {
            return Err(self.unexpected(expected));
        }
        self.pos += 1;
        Ok(())
    }

    /// At the end of the text a formula is unclosed, whatever was expected next.
    fn unexpected(&self, expected: &str) -> FormulaError {
        match self.text[self.pos..].chars().next() {
            None => self.unclosed(),
            Some(found) => error(self.pos, format!("expected {expected}, found `{}`", shown(found))),
        }
    }

    fn unclosed(&self) -> FormulaError {
        error(self.open, "unclosed `{!`; a formula ends with `}`")
    }
}

/// A character as an error shows it: control characters escaped, so a message stays one line.
fn shown(c: char) -> String {
    if c.is_control() {
        c.escape_debug().to_string()
    } else {
        c.to_string()
    }
}

fn push_expr(items: &mut Vec<Expr>, expr: Expr) {
    match (items.last_mut(), expr) {
        (_, Expr::Concat(inner)) => inner.into_iter().for_each(|item| push_expr(items, item)),
        (Some(Expr::Bytes(last)), Expr::Bytes(bytes)) => last.extend_from_slice(&bytes),
        (_, expr) => items.push(expr),
    }
}

/// Evaluates a call now when nothing in it varies per request; its errors are then the
/// config's, at the function's name.
fn fold(function: Function, args: Vec<Expr>, at: usize) -> Result<Expr, FormulaError> {
    let constant = function != Function::UnixTime && args.iter().all(|arg| matches!(arg, Expr::Bytes(_)));
    let call = Expr::Call(function, args);
    if !constant {
        return Ok(call);
    }
    // The failing call is this one: its arguments are folded already. Its messages name it.
    let mut value = Vec::new();
    eval::write(&call, &NoFields, UNIX_EPOCH, &mut value)
        .map_err(|problem| error(at, problem.to_string()))?;
    Ok(Expr::Bytes(value))
}

struct NoFields;

impl super::Fields for NoFields {
    fn get(&self, _: &Field) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
}
