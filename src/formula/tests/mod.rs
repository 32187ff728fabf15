//! Tests of the formula module: known answers for each function, the grammar, every error
//! message with its offset, header safety, and a property test against a reference evaluator.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{EvalError, Field, Fields, Formula, FormulaError};
use crate::secret::Secret;

mod errors;
mod functions;
mod grammar;
mod header;
mod model;

/// Field values as the request path would hold them: secrets, exposed only to render.
#[derive(Default)]
struct Values(HashMap<Field, Secret>);

impl Values {
    fn with(mut self, field: Field, value: &str) -> Values {
        self.0.insert(field, Secret::new(value));
        self
    }
}

impl Fields for Values {
    fn get(&self, field: &Field) -> Option<Cow<'_, str>> {
        self.0.get(field).map(|value| Cow::Borrowed(value.expose()))
    }
}

fn user(name: &str) -> Field {
    Field::User(name.to_owned())
}

fn param(external_credential: &str, name: &str) -> Field {
    Field::Parameter {
        external_credential: external_credential.to_owned(),
        name: name.to_owned(),
    }
}

/// A fixed clock: 2023-11-14T22:13:20Z and a half.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
}

fn parse(text: &str) -> Formula {
    match Formula::parse(text) {
        Ok(formula) => formula,
        Err(FormulaError { offset, message }) => panic!("{text:?} at {offset}: {message}"),
    }
}

fn render(text: &str, values: &Values) -> String {
    match parse(text).render(values, now()) {
        Ok(value) => value.into_owned(),
        Err(error) => panic!("{text:?}: {error}"),
    }
}

fn render_error(text: &str, values: &Values) -> EvalError {
    match parse(text).render(values, now()) {
        Ok(value) => panic!("{text:?} rendered {value:?}"),
        Err(error) => error,
    }
}
