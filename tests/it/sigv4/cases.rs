//! The generated requests: a seeded generator, so a seed names a set of requests.
use base64::Engine as _;
use callout::secret::Secret;
use callout::sigv4::Credentials;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};

/// One generated request and what signs it.
pub struct Case {
    pub method: Method,
    pub authority: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub unsigned: bool,
    pub region: String,
    pub service: String,
    pub token: Option<String>,
    pub time: u64,
}

impl Case {
    pub fn generate(rng: &mut Rng) -> Case {
        let service = rng.pick(&["s3", "execute-api", "sts"]).to_string();
        let region = rng
            .pick(&["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"])
            .to_string();
        let host = match service.as_str() {
            "s3" => format!("bucket-{}.s3.{region}.amazonaws.com", rng.below(100)),
            "execute-api" => format!("a1b2c{}.execute-api.{region}.amazonaws.com", rng.below(10)),
            _ => format!("sts.{region}.amazonaws.com"),
        };
        let authority = match rng.below(4) {
            0 => format!("{host}:8443"),
            _ => host,
        };
        let method = rng
            .pick(&[
                Method::GET,
                Method::PUT,
                Method::POST,
                Method::DELETE,
                Method::HEAD,
            ])
            .clone();

        // Path segments as on the wire: unreserved, reserved (raw where a path allows it),
        // percent-encoded space, UTF-8 and reserved bytes (some in lower-case hex), and empty
        // segments that make `//`.
        const SEGMENTS: &[&str] = &[
            "",
            "a",
            "Key-1_x.y~z",
            "photos",
            "%20",
            "a%20b",
            "%E1%88%B4",
            "caf%c3%a9",
            "%2F",
            "%25",
            "!$&'()*+,;=:@",
            "a+b",
            "x:y",
            "(1)",
            "~",
            "..",
            ".",
            "%2E",
            "2024",
            "UPPER",
        ];
        let mut path = String::new();
        for _ in 0..=rng.below(5) {
            path.push('/');
            let segment: &&str = rng.pick(SEGMENTS);
            path.push_str(segment);
        }
        if rng.below(3) == 0 {
            path.push('/');
        }

        // Query pairs as on the wire: repeated names, names without `=`, empty values,
        // `+` for a space and `%2B` for a plus, encoded UTF-8, reserved characters.
        const NAMES: &[&str] = &[
            "a",
            "A",
            "b",
            "list-type",
            "prefix",
            "x-id",
            "%E1%88%B4",
            "k%20n",
            "n+m",
            "Z~",
        ];
        const VALUES: &[&str] = &[
            "",
            "1",
            "value",
            "a+b",
            "a%2Bb",
            "a%20b",
            "%C3%A9t%C3%A9",
            "/path/x",
            "a=b",
            "?:@!$'()*,;",
            "100%25",
            "%7e%41",
        ];
        let query = match rng.below(4) {
            0 => None,
            1 if rng.below(2) == 0 => Some(String::new()),
            _ => {
                let pairs: Vec<String> = (0..=rng.below(5))
                    .map(|_| match rng.below(6) {
                        0 => rng.pick(NAMES).to_string(),
                        _ => format!("{}={}", rng.pick(NAMES), rng.pick(VALUES)),
                    })
                    .collect();
                Some(pairs.join("&"))
            }
        };

        // Headers: names in mixed case, values with blanks to trim and collapse, repeats;
        // some signed (x-amz-*, content-type, content-md5, host), some not; stale values
        // of what `sign` sets.
        let mut headers = Vec::new();
        const EXTRA: &[(&str, &str)] = &[
            ("X-Amz-Meta-Owner", "  Jane   Doe  "),
            ("x-amz-meta-owner", "second\tvalue"),
            ("X-AMZ-ACL", "private"),
            ("x-amz-target", "Service_20240101.Operation"),
            ("X-Amz-User-Agent", "aws-sdk/1.0  extra"),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("content-type", "text/plain;  charset=utf-8"),
            ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("User-Agent", "callout-test"),
            ("Accept", "*/*"),
            ("X-Custom", "  not signed  "),
            ("Authorization", "Bearer stale"),
            ("X-Amz-Date", "19990101T000000Z"),
            ("X-Amz-Content-SHA256", "stale"),
        ];
        for _ in 0..rng.below(7) {
            let (name, value) = rng.pick(EXTRA);
            headers.push((name.to_string(), value.to_string()));
        }
        if rng.below(3) == 0 {
            headers.push(("Host".to_owned(), authority.clone()));
        }
        let token = match rng.below(2) {
            0 => None,
            _ => {
                const ALPHABET: &[u8] = b"ABCabc0189+/=";
                let token: String = (0..rng.below(80) + 20)
                    .map(|_| *rng.pick(ALPHABET) as char)
                    .collect();
                // A caller's token is replaced by ours (and dropped without one: botocore
                // would sign it then, callout never sends it).
                if rng.below(3) == 0 {
                    headers.push(("X-Amz-Security-Token".to_owned(), "stale-token".to_owned()));
                }
                Some(token)
            }
        };

        let body = match rng.below(3) {
            0 => Vec::new(),
            _ => (0..rng.below(200) + 1).map(|_| rng.below(256) as u8).collect(),
        };
        Case {
            method,
            authority,
            path,
            query,
            headers,
            body,
            unsigned: service == "s3" && rng.below(3) == 0,
            region,
            service,
            token,
            // 2000-01-01 to 2099-12-31.
            time: 946_684_800 + rng.below(3_155_673_600),
        }
    }

    pub fn url(&self) -> String {
        match &self.query {
            Some(query) => format!("https://{}{}?{query}", self.authority, self.path),
            None => format!("https://{}{}", self.authority, self.path),
        }
    }

    pub fn uri(&self) -> Uri {
        self.url()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", self.url()))
    }

    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: Secret::new(SECRET),
            session_token: self.token.as_deref().map(Secret::new),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "method": self.method.as_str(),
            "url": self.url(),
            "headers": self.headers,
            "body": base64::engine::general_purpose::STANDARD.encode(&self.body),
            "unsigned": self.unsigned,
            "region": self.region,
            "service": self.service,
            "access_key_id": "AKIDEXAMPLE",
            "secret_access_key": SECRET,
            "session_token": self.token,
            "time": self.time,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}/{}, {} body bytes{}, token: {}, headers {:?})",
            self.method,
            self.url(),
            self.region,
            self.service,
            self.body.len(),
            if self.unsigned { ", unsigned" } else { "" },
            self.token.is_some(),
            self.headers
        )
    }
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// A small deterministic generator (xorshift64*): the same seed, the same requests.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
