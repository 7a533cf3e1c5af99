//! The GraphQL subset GKS 2.0 clients send (docs/gks2.md §1): one operation (`mutation` or
//! `query`, named or not) with variable definitions (defaults allowed), one top-level field with
//! arguments (variables or literals) and a selection set. The field and the fields of its
//! selection may carry an alias (`signResult: signSale(…)`, as fiskaltrust's client sends): the
//! answer then uses the alias as its key. Fragments, directives, subscriptions, several fields
//! and several operations are refused. Parsing is bounded in size, tokens and depth.

use serde_json::{Map, Number, Value};

/// Largest query text.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Most tokens in a query.
pub const MAX_TOKENS: usize = 8_192;
/// Deepest nesting of selections or values.
pub const MAX_DEPTH: usize = 16;

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphQlError {
    /// Not GraphQL, or over a bound.
    #[error("{0}")]
    Parse(String),
    /// Valid GraphQL outside the subset (fragments, directives, several fields…).
    #[error("{0}")]
    Unsupported(String),
}

impl GraphQlError {
    /// The code in the error's extensions.
    pub fn code(&self) -> &'static str {
        match self {
            GraphQlError::Parse(_) => "GRAPHQL_PARSE_FAILED",
            GraphQlError::Unsupported(_) => "GRAPHQL_UNSUPPORTED",
        }
    }
}

/// `mutation` or `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// `mutation`.
    Mutation,
    /// `query` (or the shorthand `{ … }`).
    Query,
}

/// A selection set: response key, field name, sub-selection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// The fields, in order.
    pub fields: Vec<SelectedField>,
}

/// One selected field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedField {
    /// Alias or name.
    pub key: String,
    /// Field name.
    pub name: String,
    /// Sub-selection.
    pub selection: Option<Selection>,
}

/// The one operation of a request, with its arguments resolved against the variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Kind.
    pub kind: OperationKind,
    /// Response key of the top-level field.
    pub key: String,
    /// Top-level field name (`signSale`, `device`).
    pub field: String,
    /// Arguments, resolved.
    pub arguments: Map<String, Value>,
    /// What to answer.
    pub selection: Option<Selection>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Punct(char),
    Name(String),
    Int(String),
    Float(String),
    Str(String),
}

fn lex(text: &str) -> Result<Vec<Tok>, GraphQlError> {
    let err = |m: &str| GraphQlError::Parse(m.into());
    if text.len() > MAX_QUERY_BYTES {
        return Err(err("query too long"));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        if out.len() > MAX_TOKENS {
            return Err(err("query has too many tokens"));
        }
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' | '}' | '(' | ')' | '[' | ']' | ':' | '!' | '$' | '=' => {
                out.push(Tok::Punct(c));
                i += 1;
            }
            '@' => {
                return Err(GraphQlError::Unsupported(
                    "directives are not supported".into(),
                ));
            }
            '.' => {
                return Err(GraphQlError::Unsupported(
                    "fragments are not supported".into(),
                ));
            }
            '"' => {
                if chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                    return Err(GraphQlError::Unsupported(
                        "block strings are not supported".into(),
                    ));
                }
                i += 1;
                let mut s = String::new();
                loop {
                    let c = *chars.get(i).ok_or_else(|| err("unterminated string"))?;
                    i += 1;
                    match c {
                        '"' => break,
                        '\n' => return Err(err("unterminated string")),
                        '\\' => {
                            let e = *chars.get(i).ok_or_else(|| err("unterminated string"))?;
                            i += 1;
                            s.push(match e {
                                '"' => '"',
                                '\\' => '\\',
                                '/' => '/',
                                'b' => '\u{8}',
                                'f' => '\u{c}',
                                'n' => '\n',
                                'r' => '\r',
                                't' => '\t',
                                'u' => {
                                    let hex: String =
                                        chars.get(i..i + 4).unwrap_or(&[]).iter().collect();
                                    i += 4;
                                    u32::from_str_radix(&hex, 16)
                                        .ok()
                                        .and_then(char::from_u32)
                                        .ok_or_else(|| err("bad \\u escape"))?
                                }
                                _ => return Err(err("bad escape in string")),
                            });
                        }
                        c => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                let mut float = false;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    float |= matches!(chars[i], '.' | 'e' | 'E');
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                out.push(if float { Tok::Float(s) } else { Tok::Int(s) });
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                out.push(Tok::Name(chars[start..i].iter().collect()));
            }
            _ => return Err(err(&format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    variables: &'a Map<String, Value>,
    defaults: Map<String, Value>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Result<Tok, GraphQlError> {
        let t = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or_else(|| GraphQlError::Parse("unexpected end of query".into()))?;
        self.pos += 1;
        Ok(t)
    }
    fn is(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }
    fn expect(&mut self, c: char) -> Result<(), GraphQlError> {
        match self.next()? {
            Tok::Punct(p) if p == c => Ok(()),
            t => Err(GraphQlError::Parse(format!("expected {c:?}, found {t:?}"))),
        }
    }
    fn name(&mut self) -> Result<String, GraphQlError> {
        match self.next()? {
            Tok::Name(n) => Ok(n),
            t => Err(GraphQlError::Parse(format!("expected a name, found {t:?}"))),
        }
    }

    fn skip_type(&mut self, depth: usize) -> Result<(), GraphQlError> {
        if depth > MAX_DEPTH {
            return Err(GraphQlError::Parse("type nested too deeply".into()));
        }
        if self.is('[') {
            self.expect('[')?;
            self.skip_type(depth + 1)?;
            self.expect(']')?;
        } else {
            self.name()?;
        }
        if self.is('!') {
            self.expect('!')?;
        }
        Ok(())
    }

    fn variable_definitions(&mut self) -> Result<(), GraphQlError> {
        self.expect('(')?;
        while !self.is(')') {
            self.expect('$')?;
            let name = self.name()?;
            self.expect(':')?;
            self.skip_type(0)?;
            if self.is('=') {
                self.expect('=')?;
                let v = self.value(0, true)?;
                self.defaults.insert(name, v);
            }
        }
        self.expect(')')
    }

    fn value(&mut self, depth: usize, constant: bool) -> Result<Value, GraphQlError> {
        if depth > MAX_DEPTH {
            return Err(GraphQlError::Parse("value nested too deeply".into()));
        }
        Ok(match self.next()? {
            Tok::Punct('$') if !constant => {
                let name = self.name()?;
                match self
                    .variables
                    .get(&name)
                    .or_else(|| self.defaults.get(&name))
                {
                    Some(v) => v.clone(),
                    None => Value::Null,
                }
            }
            Tok::Punct('[') => {
                let mut items = Vec::new();
                while !self.is(']') {
                    items.push(self.value(depth + 1, constant)?);
                }
                self.expect(']')?;
                Value::Array(items)
            }
            Tok::Punct('{') => {
                let mut map = Map::new();
                while !self.is('}') {
                    let k = self.name()?;
                    self.expect(':')?;
                    let v = self.value(depth + 1, constant)?;
                    map.insert(k, v);
                }
                self.expect('}')?;
                Value::Object(map)
            }
            Tok::Int(s) => Value::Number(
                s.parse::<i64>()
                    .map(Number::from)
                    .map_err(|_| GraphQlError::Parse(format!("bad integer {s}")))?,
            ),
            Tok::Float(s) => s
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| GraphQlError::Parse(format!("bad number {s}")))?,
            Tok::Str(s) => Value::String(s),
            Tok::Name(n) => match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(n),
            },
            t => return Err(GraphQlError::Parse(format!("unexpected {t:?} in a value"))),
        })
    }

    fn arguments(&mut self) -> Result<Map<String, Value>, GraphQlError> {
        let mut args = Map::new();
        if self.is('(') {
            self.expect('(')?;
            while !self.is(')') {
                let k = self.name()?;
                self.expect(':')?;
                let v = self.value(0, false)?;
                args.insert(k, v);
            }
            self.expect(')')?;
        }
        Ok(args)
    }

    fn selection(&mut self, depth: usize) -> Result<Selection, GraphQlError> {
        if depth > MAX_DEPTH {
            return Err(GraphQlError::Parse("selection nested too deeply".into()));
        }
        self.expect('{')?;
        let mut fields = Vec::new();
        while !self.is('}') {
            let (key, name, _) = self.field_head()?;
            let selection = if self.is('{') {
                Some(self.selection(depth + 1)?)
            } else {
                None
            };
            fields.push(SelectedField {
                key,
                name,
                selection,
            });
        }
        self.expect('}')?;
        if fields.is_empty() {
            return Err(GraphQlError::Parse("empty selection set".into()));
        }
        Ok(Selection { fields })
    }

    fn field_head(&mut self) -> Result<(String, String, Map<String, Value>), GraphQlError> {
        let first = self.name()?;
        let (key, name) = if self.is(':') {
            self.expect(':')?;
            (first, self.name()?)
        } else {
            (first.clone(), first)
        };
        let args = self.arguments()?;
        Ok((key, name, args))
    }
}

/// Parses `query` with `variables` into its one operation.
pub fn parse(query: &str, variables: &Map<String, Value>) -> Result<Operation, GraphQlError> {
    let toks = lex(query)?;
    let mut p = Parser {
        toks,
        pos: 0,
        variables,
        defaults: Map::new(),
    };
    let kind = match p.peek() {
        Some(Tok::Punct('{')) => OperationKind::Query,
        Some(Tok::Name(n)) if n == "mutation" => {
            p.pos += 1;
            OperationKind::Mutation
        }
        Some(Tok::Name(n)) if n == "query" => {
            p.pos += 1;
            OperationKind::Query
        }
        Some(Tok::Name(n)) if n == "subscription" || n == "fragment" => {
            return Err(GraphQlError::Unsupported(format!("{n} is not supported")));
        }
        _ => return Err(GraphQlError::Parse("expected an operation".into())),
    };
    if matches!(p.peek(), Some(Tok::Name(_))) {
        p.name()?;
    }
    if p.is('(') {
        p.variable_definitions()?;
    }
    p.expect('{')?;
    let (key, field, arguments) = p.field_head()?;
    let selection = if p.is('{') {
        Some(p.selection(1)?)
    } else {
        None
    };
    match p.peek() {
        Some(Tok::Punct('}')) => {}
        None => return Err(GraphQlError::Parse("unexpected end of query".into())),
        Some(_) => {
            return Err(GraphQlError::Unsupported(
                "one field per operation is supported".into(),
            ));
        }
    }
    p.expect('}')?;
    if p.peek().is_some() {
        return Err(GraphQlError::Unsupported(
            "one operation per request is supported".into(),
        ));
    }
    Ok(Operation {
        kind,
        key,
        field,
        arguments,
        selection,
    })
}

/// The fields of `value` that `selection` asks for (absent ones as `null`), recursively; arrays
/// are projected element by element.
pub fn project(value: &Value, selection: &Selection) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, selection)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for f in &selection.fields {
                let v = match (map.get(&f.name), &f.selection) {
                    (Some(v), Some(sub)) => project(v, sub),
                    (Some(v), None) => v.clone(),
                    (None, _) => Value::Null,
                };
                out.insert(f.key.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn both_public_client_styles_parse() {
        let vars = json!({"data": {"a": 1}, "isTraining": true});
        let vars = vars.as_object().unwrap();
        let ft = "mutation SignSale($data:SaleInput! $isTraining:Boolean!) {signSale(data: $data isTraining: $isTraining) {posId fdmRef {fdmId eventCounter} footer }}";
        let op = parse(ft, vars).unwrap();
        assert_eq!(op.kind, OperationKind::Mutation);
        assert_eq!(op.field, "signSale");
        assert_eq!(op.arguments["isTraining"], json!(true));
        assert_eq!(op.arguments["data"], json!({"a": 1}));
        let od = "\n  mutation M112_signSale_RefundPartial($data: SaleInput!, $training: Boolean! = false) {\n signSale(data: $data, isTraining: $training) { posId # comment\n fdmRef { eventLabel } } }";
        let op = parse(od, &Map::new()).unwrap();
        assert_eq!(op.arguments["isTraining"], json!(false));
        assert_eq!(op.arguments["data"], Value::Null);
        let projected = project(
            &json!({"posId": "P", "fdmRef": {"eventLabel": "N", "x": 1}, "other": 2}),
            op.selection.as_ref().unwrap(),
        );
        assert_eq!(
            projected,
            json!({"posId": "P", "fdmRef": {"eventLabel": "N"}})
        );
        assert_eq!(parse("{device{id}}", &Map::new()).unwrap().field, "device");
    }

    #[test]
    fn an_aliased_field_is_answered_under_its_alias() {
        let vars = json!({"data": {}, "isTraining": false});
        let q = "mutation SignSale($data: SaleInput!, $isTraining: Boolean!) {\n  signResult: signSale(data: $data, isTraining: $isTraining) {\n    posId\n    ref: fdmRef { label: eventLabel totalCounter }\n  }\n}";
        let op = parse(q, vars.as_object().unwrap()).unwrap();
        assert_eq!(op.kind, OperationKind::Mutation);
        assert_eq!(
            (op.key.as_str(), op.field.as_str()),
            ("signResult", "signSale")
        );
        assert_eq!(op.arguments["data"], json!({}));
        let projected = project(
            &json!({"posId": "P", "fdmRef": {"eventLabel": "N", "totalCounter": 3, "fdmId": "X"}}),
            op.selection.as_ref().unwrap(),
        );
        assert_eq!(
            projected,
            json!({"posId": "P", "ref": {"label": "N", "totalCounter": 3}})
        );
        // An alias without a field, or two aliased top-level fields, stay refused.
        let m = Map::new();
        assert!(matches!(
            parse("mutation { a: { b } }", &m),
            Err(GraphQlError::Parse(_))
        ));
        assert!(matches!(
            parse("mutation { a: signSale { b } c: signSale { b } }", &m),
            Err(GraphQlError::Unsupported(_))
        ));
    }

    #[test]
    fn outside_the_subset_is_refused() {
        let m = Map::new();
        for q in [
            "mutation { a { b } } mutation { c { d } }",
            "mutation { a { b } c { d } }",
            "query { a { ...F } }",
            "query { a @skip(if: true) { b } }",
            "subscription { a }",
        ] {
            assert!(
                matches!(parse(q, &m), Err(GraphQlError::Unsupported(_))),
                "{q}"
            );
        }
        for q in [
            "",
            "mutation",
            "mutation { a { } }",
            "{ a { b }",
            "mutation { a(x: ) }",
        ] {
            assert!(matches!(parse(q, &m), Err(GraphQlError::Parse(_))), "{q}");
        }
        let deep = format!("{{ a {}{}", "{ b ".repeat(40), "}".repeat(41));
        assert!(parse(&deep, &m).is_err());
        let long = format!("{{ a {} }}", "b ".repeat(MAX_TOKENS + 10));
        assert!(parse(&long, &m).is_err());
    }
}
