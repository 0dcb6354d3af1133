//! Gateway's Wirefilter dialect, parsed into a small tree so that each comparison can be
//! carried over or translated on its own.
//!
//! Gateway adds to Wirefilter what Picket's scheme does not have: array fields read with
//! `any(field[*] OP VALUE)` and list references `$<uuid>`. Everything else (strings, IPs and
//! networks, integers, sets, `and`/`or`/`xor`/`not` and their symbols) is Wirefilter's own
//! syntax, kept as written.

use thiserror::Error;

/// A parsed Gateway expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `a and b and ...`, `a or b ...`, `a xor b ...`.
    Combine(Logic, Vec<Expr>),
    /// `not x`.
    Not(Box<Expr>),
    /// One comparison (or a Bool field alone).
    Test(Test),
}

/// How sub-expressions combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    And,
    Or,
    Xor,
}

impl Logic {
    /// Picket's spelling.
    pub fn word(self) -> &'static str {
        match self {
            Logic::And => "and",
            Logic::Or => "or",
            Logic::Xor => "xor",
        }
    }
}

/// `FIELD OP VALUE`, or `any(FIELD[*] OP VALUE)` when `any` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    /// The field without `[*]`.
    pub field: String,
    /// Read as an array: `any(...)`, or `field[*]` written without it.
    pub any: bool,
    /// `None` for a Bool field alone.
    pub op: Option<Op>,
    pub value: Value,
    /// The comparison as written, for warnings.
    pub text: String,
}

/// Comparison operators, as Picket writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Matches,
    Contains,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Matches => "matches",
            Op::Contains => "contains",
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// No value (a Bool field alone).
    None,
    /// A string, unescaped.
    Str(String),
    /// A bare literal as written: an integer, an IP, a network, a range `1..5`.
    Bare(String),
    /// `{...}`.
    Set(Vec<Value>),
    /// `$<uuid>`: a Gateway list.
    List(String),
}

/// Why an expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at character {at}: {what}")]
pub struct ParseError {
    /// 1-based character position.
    pub at: usize,
    pub what: String,
}

/// Parses a Gateway `traffic` expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { s: text, pos: 0 };
    let e = p.or()?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.error("unexpected text after the end of the expression"));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn error(&self, what: &str) -> ParseError {
        ParseError {
            at: self.s[..self.pos].chars().count() + 1,
            what: what.to_owned(),
        }
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    /// Consumes `word` (a keyword, followed by a non-identifier character) or a symbol.
    fn eat(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if !rest.starts_with(word) {
            return false;
        }
        let is_word = word.bytes().all(|b| b.is_ascii_alphabetic());
        let next = rest[word.len()..].bytes().next();
        if is_word && next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            return false;
        }
        self.pos += word.len();
        true
    }

    fn combination(
        &mut self,
        logic: Logic,
        words: [&str; 2],
        next: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut items = vec![next(self)?];
        while self.eat(words[0]) || self.eat(words[1]) {
            items.push(next(self)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Combine(logic, items)
        })
    }

    // Wirefilter's precedence: `or` binds loosest, then `xor`, then `and`.
    fn or(&mut self) -> Result<Expr, ParseError> {
        self.combination(Logic::Or, ["or", "||"], Self::xor)
    }

    fn xor(&mut self) -> Result<Expr, ParseError> {
        self.combination(Logic::Xor, ["xor", "^^"], Self::and)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        self.combination(Logic::And, ["and", "&&"], Self::unary)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat("not") || self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or()?;
            return self.close(e);
        }
        if self.eat("any") {
            if !self.eat("(") {
                return Err(self.error("expected `(` after `any`"));
            }
            let mut t = self.test()?;
            t.any = true;
            return self.close(Expr::Test(t));
        }
        Ok(Expr::Test(self.test()?))
    }

    fn close(&mut self, e: Expr) -> Result<Expr, ParseError> {
        if self.eat(")") {
            Ok(e)
        } else {
            Err(self.error("expected `)`"))
        }
    }

    fn test(&mut self) -> Result<Test, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let field = self.field()?;
        let any = self.eat("[*]");
        let op = self.op();
        let value = match op {
            Some(_) => self.value()?,
            None => Value::None,
        };
        Ok(Test {
            field,
            any,
            op,
            value,
            text: self.s[start..self.pos].trim().to_owned(),
        })
    }

    fn field(&mut self) -> Result<String, ParseError> {
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(self.rest().len());
        if len == 0 || self.rest().starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error("expected a field name such as dns.fqdn"));
        }
        let f = self.rest()[..len].to_owned();
        self.pos += len;
        Ok(f)
    }

    fn op(&mut self) -> Option<Op> {
        const OPS: [(&str, Op); 16] = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("~", Op::Matches),
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("le", Op::Le),
            ("ge", Op::Ge),
            ("lt", Op::Lt),
            ("gt", Op::Gt),
            ("in", Op::In),
            ("matches", Op::Matches),
            ("contains", Op::Contains),
        ];
        OPS.iter().find(|(w, _)| self.eat(w)).map(|(_, op)| *op)
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_ws();
        match self.rest().chars().next() {
            Some('"') => self.string().map(Value::Str),
            Some('$') => {
                self.pos += 1;
                Ok(Value::List(self.bare()?))
            }
            Some('{') => self.set(),
            Some(_) => self.bare().map(Value::Bare),
            None => Err(self.error("expected a value")),
        }
    }

    fn set(&mut self) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut items = Vec::new();
        while !self.eat("}") {
            if self.rest().trim_start().is_empty() {
                return Err(self.error("expected `}` to close the set"));
            }
            let v = self.value()?;
            if matches!(v, Value::Set(_)) {
                return Err(self.error("a set cannot hold a set"));
            }
            items.push(v);
            self.eat(",");
        }
        Ok(Value::Set(items))
    }

    /// A literal up to the next space, `}`, `)` or `,`.
    fn bare(&mut self) -> Result<String, ParseError> {
        let len = self
            .rest()
            .find(|c: char| c.is_whitespace() || matches!(c, '}' | ')' | ',' | '{' | '('))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("expected a value"));
        }
        let v = self.rest()[..len].to_owned();
        self.pos += len;
        Ok(v)
    }

    /// A double-quoted string with Wirefilter's escapes (`\"`, `\\`, `\xNN`).
    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'x')) => {
                        let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                        let byte = u8::from_str_radix(&hex, 16)
                            .map_err(|_| self.error("bad \\x escape in a string"))?;
                        out.push(char::from(byte));
                    }
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(e: &Expr) -> &Test {
        match e {
            Expr::Test(t) => t,
            other => panic!("not a test: {other:?}"),
        }
    }

    #[test]
    fn any_over_an_array_field() {
        let e = parse(r#"any(dns.domains[*] == "example.com")"#).unwrap();
        let t = test(&e);
        assert_eq!(
            (t.field.as_str(), t.any, t.op),
            ("dns.domains", true, Some(Op::Eq))
        );
        assert_eq!(t.value, Value::Str("example.com".into()));
        assert_eq!(t.text, r#"dns.domains[*] == "example.com""#);
    }

    #[test]
    fn sets_lists_and_bare_values() {
        let e = parse(r#"dns.src_ip in {10.0.0.0/8 2001:db8::/32} and any(dns.domains[*] in $6b0e5bb7-aaaa-bbbb-cccc-0123456789ab)"#).unwrap();
        let Expr::Combine(Logic::And, items) = e else {
            panic!("and expected")
        };
        assert_eq!(
            test(&items[0]).value,
            Value::Set(vec![
                Value::Bare("10.0.0.0/8".into()),
                Value::Bare("2001:db8::/32".into())
            ])
        );
        assert_eq!(
            test(&items[1]).value,
            Value::List("6b0e5bb7-aaaa-bbbb-cccc-0123456789ab".into())
        );
    }

    #[test]
    fn precedence_and_negation() {
        let e =
            parse(r#"not(dns.fqdn == "a") or dns.fqdn == "b" && dns.query_rtype == "A""#).unwrap();
        let Expr::Combine(Logic::Or, items) = e else {
            panic!("or expected")
        };
        assert!(matches!(items[0], Expr::Not(_)));
        assert!(matches!(items[1], Expr::Combine(Logic::And, _)));
    }

    #[test]
    fn escapes_in_strings() {
        let e = parse(r#"dns.fqdn == "a\"b\x41""#).unwrap();
        assert_eq!(test(&e).value, Value::Str("a\"bA".into()));
    }

    #[test]
    fn errors_say_where() {
        let err = parse(r#"dns.fqdn == "a" and"#).unwrap_err();
        assert_eq!(err.at, 20);
        assert!(parse(r#"any(dns.domains[*] == "a""#).is_err());
        assert!(parse(r#"dns.fqdn in {"a" "b""#).is_err());
        assert!(parse(r#"dns.fqdn == "a" )"#).is_err());
    }
}
