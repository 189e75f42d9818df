//! Parses the graph's text form (`print.rs`) back into a graph, so a printed
//! graph can be edited, stored as a test case and read again.
//!
//! Invariant (tested on every example and case, before and after the passes):
//! `print(parse(print(g)))` is `print(g)`.

use super::ops::{Generic, LoopVar, Recurrence, ScanOp, ScanStmt, State, StateInit};
use super::{Graph, Op, Scalar, ScalarFn, ValueId};
use crate::sema::types::{Dim, TensorTy};
use crate::syntax::ast::{DType, ReduceOp};
use crate::syntax::lexer::{self, Token};
use std::collections::HashMap;

/// A parse failure: the line (1-based) and what was wrong.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |line: usize, message: String| ParseError { line: line + 1, message };
    let first = lines.first().ok_or_else(|| err(0, "empty text".into()))?;
    let name = first
        .strip_prefix("graph ")
        .and_then(|r| r.strip_suffix(" {"))
        .ok_or_else(|| err(0, "expected `graph NAME {`".into()))?;
    let mut g = Graph::new(name);
    let mut values: HashMap<u32, ValueId> = HashMap::new();
    let mut i = 1;
    while i < lines.len() {
        let line = lines[i].trim();
        if line == "}" {
            return Ok(g);
        }
        for (keyword, list) in [("output ", &mut g.outputs), ("next ", &mut g.next_states)] {
            let Some(rest) = line.strip_prefix(keyword) else { continue };
            let (name, v) = rest.split_once(" = ").ok_or_else(|| err(i, format!("expected `{keyword}NAME = %N`")))?;
            let v = value_ref(v, &values).ok_or_else(|| err(i, format!("unknown value `{v}`")))?;
            list.push((name.to_string(), v));
        }
        if line.starts_with("output ") || line.starts_with("next ") {
            i += 1;
            continue;
        }
        let (results, rest) = line.split_once(" = ").ok_or_else(|| err(i, "expected `%N = op ...`".into()))?;
        let results: Vec<u32> = results
            .split(", ")
            .map(|r| r.strip_prefix('%').and_then(|n| n.parse().ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| err(i, "bad result list".into()))?;
        let (opname, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        // A scan spans lines up to `} : TYPES`.
        let (head, types_text, consumed) = if opname == "scan" {
            let mut j = i + 1;
            while j < lines.len() && !lines[j].trim().starts_with("} : ") {
                j += 1;
            }
            let close = lines.get(j).ok_or_else(|| err(i, "unterminated scan".into()))?;
            (rest.to_string(), close.trim()["} : ".len()..].to_string(), j - i + 1)
        } else {
            let (h, t) = rest.rsplit_once(" : ").ok_or_else(|| err(i, "expected ` : TYPE`".into()))?;
            (h.to_string(), t.to_string(), 1)
        };
        let types = parse_types(&types_text).ok_or_else(|| err(i, format!("bad types `{types_text}`")))?;
        if types.len() != results.len() {
            return Err(err(i, "as many types as results".into()));
        }
        let (op, operands) = if opname == "scan" {
            scan(&head, &lines[i + 1..i + consumed - 1], &values, &results).map_err(|m| err(i, m))?
        } else {
            op(opname, &head, &values).map_err(|m| err(i, m))?
        };
        let ids = g.add(op, operands, types);
        for (n, id) in results.into_iter().zip(ids) {
            values.insert(n, id);
        }
        i += consumed;
    }
    Err(err(lines.len().saturating_sub(1), "expected `}`".into()))
}

fn value_ref(s: &str, values: &HashMap<u32, ValueId>) -> Option<ValueId> {
    values.get(&s.trim().strip_prefix('%')?.parse::<u32>().ok()?).copied()
}

fn parse_types(s: &str) -> Option<Vec<TensorTy>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let open = rest.find('[')?;
        let close = rest.find(']')?;
        let dtype = match &rest[..open] {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::Bf16,
            "i32" => DType::I32,
            "i64" => DType::I64,
            _ => return None,
        };
        out.push(TensorTy { dtype, shape: dims(&rest[open + 1..close])? });
        rest = rest[close + 1..].trim_start_matches(',').trim();
    }
    Some(out)
}

fn dims(s: &str) -> Option<Vec<Dim>> {
    if s.trim().is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(|d| dim(d.trim())).collect()
}

fn dim(d: &str) -> Option<Dim> {
    match d.parse::<i64>() {
        Ok(v) => Some(Dim::Known(v)),
        Err(_) if d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !d.is_empty() => Some(Dim::Sym(d.into())),
        Err(_) => None,
    }
}

fn string_lit(s: &str) -> Result<String, String> {
    let inner = s.trim().strip_prefix('"').and_then(|r| r.strip_suffix('"')).ok_or("expected a string")?;
    Ok(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// `%a, %b attr=v` into operands and the attribute text.
fn operands_and_attr(s: &str, values: &HashMap<u32, ValueId>) -> Result<(Vec<ValueId>, Option<String>), String> {
    let mut ops = Vec::new();
    let mut attr = None;
    for part in s.split(", ") {
        let part = part.trim();
        let (v, a) = match part.split_once(' ') {
            Some((v, a)) => (v, Some(a.to_string())),
            None => (part, None),
        };
        if v.starts_with('%') {
            ops.push(value_ref(v, values).ok_or(format!("unknown value `{v}`"))?);
            if a.is_some() {
                attr = a;
            }
        } else {
            // An attribute list may itself contain ", " (`sizes=[4, 4]`).
            attr = Some(match attr {
                Some(prev) => format!("{prev}, {part}"),
                None => part.to_string(),
            });
        }
    }
    Ok((ops, attr))
}

fn attr_f64(attr: &Option<String>, key: &str) -> Result<f64, String> {
    attr.as_deref()
        .and_then(|a| a.strip_prefix(key))
        .and_then(|v| v.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or(format!("expected `{key}=`"))
}

fn op(name: &str, rest: &str, values: &HashMap<u32, ValueId>) -> Result<(Op, Vec<ValueId>), String> {
    Ok(match name {
        "input" => (Op::Input { name: string_lit(rest)? }, Vec::new()),
        "weight" => (Op::Weight { name: string_lit(rest)? }, Vec::new()),
        "const" => (Op::Const { value: rest.trim().parse().map_err(|_| "expected a number")? }, Vec::new()),
        "state" => {
            let (name, init) = rest.rsplit_once(" init=").ok_or("expected `state NAME init=V`")?;
            (
                Op::StateInput { name: string_lit(name)?, init: init.parse().map_err(|_| "bad initial value")? },
                Vec::new(),
            )
        }
        "generic" | "attention" => {
            let (gen, operands) = generic(rest, values)?;
            (if name == "generic" { Op::Generic(Box::new(gen)) } else { Op::Attention(Box::new(gen)) }, operands)
        }
        _ => {
            let (ops, attr) = operands_and_attr(rest, values)?;
            let op = match name {
                "linear" => Op::Linear { bias: ops.len() == 3 },
                "conv1d" => Op::Conv1d { bias: ops.len() == 3 },
                "embed" => Op::Embed,
                "fftconv" => Op::FftConv { starts: ops.len() == 3 },
                "softmax" => Op::Softmax,
                "reshape" => Op::Reshape,
                "concat" => Op::Concat,
                "rmsnorm" => Op::RmsNorm { eps: attr_f64(&attr, "eps")? },
                "layernorm" => Op::LayerNorm { eps: attr_f64(&attr, "eps")? },
                "rope" => Op::Rope { theta: attr_f64(&attr, "theta")? },
                "append" => Op::Append { axis: attr_f64(&attr, "axis")? as usize },
                "tail" => Op::Tail { axis: attr_f64(&attr, "axis")? as usize },
                "split" => {
                    let list = attr.as_deref().and_then(|a| a.strip_prefix("sizes=")).ok_or("expected `sizes=`")?;
                    let sizes = list
                        .trim_matches(|c| c == '[' || c == ']')
                        .split(", ")
                        .map(|v| v.parse::<i64>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| "bad sizes")?;
                    Op::Split { sizes }
                }
                other => return Err(format!("unknown op `{other}`")),
            };
            (op, ops)
        }
    })
}

/// `[binders] (%a, %b)` at the start of `s`; returns them and the rest.
fn header<'s>(s: &'s str, values: &HashMap<u32, ValueId>) -> Result<(Vec<LoopVar>, Vec<ValueId>, &'s str), String> {
    let close = s.find("] (").ok_or("expected `[...] (...)`")?;
    let binders = binder_list(&s[1..close])?;
    let rest = &s[close + 3..];
    let end = rest.find(')').ok_or("expected `)`")?;
    let operands = if rest[..end].trim().is_empty() {
        Vec::new()
    } else {
        rest[..end]
            .split(", ")
            .map(|v| value_ref(v, values).ok_or(format!("unknown value `{v}`")))
            .collect::<Result<_, _>>()?
    };
    Ok((binders, operands, &rest[end + 1..]))
}

fn binder_list(s: &str) -> Result<Vec<LoopVar>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(", ")
        .map(|b| {
            let (name, ext) = b.split_once(" in ").ok_or(format!("expected `i in D`, found `{b}`"))?;
            Ok(LoopVar { name: name.trim().to_string(), extent: dim(ext.trim()).ok_or("bad extent")? })
        })
        .collect()
}

fn generic(s: &str, values: &HashMap<u32, ValueId>) -> Result<(Generic, Vec<ValueId>), String> {
    let (mut vars, operands, rest) = header(s, values)?;
    let rank = vars.len();
    let rest = rest.trim().strip_prefix("= ").ok_or("expected `= body`")?;
    let (body_text, cond_text) = split_where(rest);
    let mut names: Vec<String> = vars.iter().map(|v| v.name.clone()).collect();
    let body = parse_body(body_text, &mut vars, &mut names, &operands, &[])?;
    let cond = match cond_text {
        Some(c) => Some(parse_body(c, &mut vars, &mut names, &operands, &[])?),
        None => None,
    };
    Ok((Generic { vars, rank, body, cond }, operands))
}

/// `body where cond`: the last top-level ` where `.
fn split_where(s: &str) -> (&str, Option<&str>) {
    match s.rfind(" where ") {
        Some(k) => (&s[..k], Some(&s[k + 7..])),
        None => (s, None),
    }
}

fn scan(
    head: &str,
    body: &[&str],
    values: &HashMap<u32, ValueId>,
    results: &[u32],
) -> Result<(Op, Vec<ValueId>), String> {
    let (mut vars, mut operands, _) = header(head, values)?;
    let mut names: Vec<String> = vars.iter().map(|v| v.name.clone()).collect();
    let mut states: Vec<State> = Vec::new();
    let mut recurrence = Vec::new();
    let (mut updates, mut outputs) = (Vec::new(), Vec::new());
    for line in body {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("state ") {
            let open = rest.find('[').ok_or("expected `state NAME[...]`")?;
            let close = rest.find(']').ok_or("expected `]`")?;
            let (init_text, attr) = rest[close + 1..]
                .trim()
                .strip_prefix("= ")
                .ok_or("expected `= init`")?
                .split_once(' ')
                .map_or((rest[close + 1..].trim().trim_start_matches("= "), ""), |(a, b)| (a, b));
            let init = if init_text.starts_with('%') {
                let v = value_ref(init_text, values).ok_or("unknown value")?;
                let k = operands.iter().position(|&o| o == v).ok_or("an initial value must be an operand")?;
                StateInit::Operand(k as u32)
            } else {
                StateInit::Const(init_text.parse().map_err(|_| "bad initial value")?)
            };
            recurrence.push(match attr {
                "linear time-invariant" => Recurrence::Linear { time_invariant: true },
                "linear" => Recurrence::Linear { time_invariant: false },
                "nonlinear" => Recurrence::Nonlinear,
                _ => Recurrence::Unknown,
            });
            states.push(State {
                name: rest[..open].to_string(),
                shape: dims(&rest[open + 1..close]).ok_or("bad shape")?,
                init,
            });
            continue;
        }
        let (lhs, rhs) = line.split_once(" = ").ok_or("expected `target[...] = body`")?;
        let open = lhs.find('[').ok_or("expected `target[...]`")?;
        let target = &lhs[..open];
        let mut left = Vec::new();
        for b in binder_list(lhs[open + 1..].trim_end_matches(']'))? {
            let id = match names.iter().position(|n| *n == b.name) {
                Some(id) => id,
                None => {
                    names.push(b.name.clone());
                    vars.push(b);
                    vars.len() - 1
                }
            };
            left.push(id as u32);
        }
        let state_names: Vec<String> = states.iter().map(|s| s.name.clone()).collect();
        let (body_text, cond_text) = split_where(rhs);
        let body = parse_body(body_text, &mut vars, &mut names, &operands, &state_names)?;
        let cond = match cond_text {
            Some(c) => Some(parse_body(c, &mut vars, &mut names, &operands, &state_names)?),
            None => None,
        };
        match states.iter().position(|s| s.name == target) {
            Some(k) => updates.push(ScanStmt { target: k as u32, left, body, cond }),
            None => {
                let n: u32 = target.strip_prefix('%').and_then(|v| v.parse().ok()).ok_or("unknown target")?;
                let k = results.iter().position(|&r| r == n).ok_or("an output must be a result of the scan")?;
                outputs.push(ScanStmt { target: k as u32, left, body, cond });
            }
        }
    }
    operands.shrink_to_fit();
    Ok((Op::Scan(Box::new(ScanOp { axis: 0, vars, states, updates, outputs, recurrence })), operands))
}

/// A body's parser: precedence climbing over the `.seq` lexer's tokens, with
/// operands written `%N` and reductions binding `i in D`.
struct Body<'b, 't> {
    vars: &'b mut Vec<LoopVar>,
    names: &'b mut Vec<String>,
    operands: &'b [ValueId],
    states: &'b [String],
    tokens: Vec<Token<'t>>,
    pos: usize,
}

/// Parses one body; `%12` is read as the identifier `__v12` by the `.seq` lexer.
fn parse_body(
    text: &str,
    vars: &mut Vec<LoopVar>,
    names: &mut Vec<String>,
    operands: &[ValueId],
    states: &[String],
) -> Result<Scalar, String> {
    let text = text.replace('%', "__v");
    let lexed = lexer::lex(crate::diag::FileId(0), &text, 1);
    if !lexed.diags.is_empty() {
        return Err(format!("cannot read `{text}`"));
    }
    let tokens = lexed.tokens.into_iter().map(|(_, t, _)| t).collect();
    let mut b = Body { vars, names, operands, states, tokens, pos: 0 };
    let e = b.expr()?;
    if b.pos != b.tokens.len() {
        return Err(format!("unexpected {:?}", b.tokens[b.pos]));
    }
    Ok(e)
}

impl<'t> Body<'_, 't> {
    fn peek(&self) -> Option<&Token<'t>> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Token) -> Result<(), String> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(format!("expected `{}`", t.text()))
        }
    }

    fn expr(&mut self) -> Result<Scalar, String> {
        self.binary(1)
    }

    fn binary(&mut self, min: u8) -> Result<Scalar, String> {
        let mut lhs = self.unary()?;
        loop {
            let Some((f, p)) = self.peek().and_then(infix) else { return Ok(lhs) };
            if p < min {
                return Ok(lhs);
            }
            self.pos += 1;
            let rhs = self.binary(p + 1)?;
            lhs = Scalar::Apply(f, vec![lhs, rhs]);
        }
    }

    fn unary(&mut self) -> Result<Scalar, String> {
        if self.eat(&Token::Minus) {
            return Ok(Scalar::Apply(ScalarFn::Neg, vec![self.unary()?]));
        }
        if self.eat(&Token::Bang) {
            return Ok(Scalar::Apply(ScalarFn::Not, vec![self.unary()?]));
        }
        if self.eat(&Token::If) {
            let c = self.expr()?;
            self.expect(&Token::Then)?;
            let a = self.expr()?;
            self.expect(&Token::Else)?;
            let b = self.expr()?;
            return Ok(Scalar::Select(Box::new(c), Box::new(a), Box::new(b)));
        }
        let reduce = match self.peek() {
            Some(Token::Sum) => Some(ReduceOp::Sum),
            Some(Token::Max) => Some(ReduceOp::Max),
            Some(Token::Min) => Some(ReduceOp::Min),
            Some(Token::Mean) => Some(ReduceOp::Mean),
            Some(Token::Softmax) => Some(ReduceOp::Softmax),
            _ => None,
        };
        if let (Some(op), Some(Token::LBracket)) = (reduce, self.tokens.get(self.pos + 1)) {
            self.pos += 2;
            let mut ids = Vec::new();
            loop {
                let Some(Token::Ident(name)) = self.peek().cloned() else { return Err("expected an index".into()) };
                self.pos += 1;
                self.expect(&Token::In)?;
                let extent = match self.peek().cloned() {
                    Some(Token::Int(v)) => Dim::Known(v),
                    Some(Token::Ident(d)) => Dim::Sym(d.into()),
                    _ => return Err("expected an extent".into()),
                };
                self.pos += 1;
                let id = match self.names.iter().position(|n| n == name) {
                    Some(id) if op == ReduceOp::Softmax => id, // softmax keeps its index
                    _ => {
                        self.names.push(name.to_string());
                        self.vars.push(LoopVar { name: name.to_string(), extent });
                        self.vars.len() - 1
                    }
                };
                ids.push(id as u32);
                if !self.eat(&Token::Comma) {
                    break;
                }
            }
            self.expect(&Token::RBracket)?;
            let body = self.expr()?;
            return Ok(Scalar::Reduce { op, vars: ids, body: Box::new(body) });
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Scalar, String> {
        let t = self.peek().cloned().ok_or("unexpected end")?;
        self.pos += 1;
        match t {
            Token::Int(v) => Ok(Scalar::Const(v as f64)),
            Token::Float(v) => Ok(Scalar::Const(v)),
            Token::LParen => {
                let e = self.expr()?;
                self.expect(&Token::RParen)?;
                // `(-2)` is how a negative constant prints.
                Ok(match e {
                    Scalar::Apply(ScalarFn::Neg, a) => match a[0] {
                        Scalar::Const(v) => Scalar::Const(-v),
                        _ => Scalar::Apply(ScalarFn::Neg, a),
                    },
                    other => other,
                })
            }
            Token::Max | Token::Min => {
                let f = if t == Token::Max { ScalarFn::Max } else { ScalarFn::Min };
                Ok(Scalar::Apply(f, self.args()?))
            }
            Token::Ident(name) => {
                if let Some(n) = name.strip_prefix("__v") {
                    let v: u32 = n.parse().map_err(|_| "bad operand")?;
                    let k = self.operands.iter().position(|o| o.0 == v).ok_or(format!("%{v} is not an operand"))?;
                    self.expect(&Token::LBracket)?;
                    return Ok(Scalar::Load { operand: k as u32, indices: self.index_list()? });
                }
                if let Some(s) = self.states.iter().position(|s| s == name) {
                    self.expect(&Token::LBracket)?;
                    return Ok(Scalar::State { state: s as u32, indices: self.index_list()? });
                }
                if self.peek() == Some(&Token::LParen) {
                    let f = ScalarFn::function(name).ok_or(format!("unknown function `{name}`"))?;
                    return Ok(Scalar::Apply(f, self.args()?));
                }
                match self.names.iter().position(|n| n == name) {
                    Some(id) => Ok(Scalar::Index(id as u32)),
                    None => Ok(Scalar::Size(name.to_string())),
                }
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn index_list(&mut self) -> Result<Vec<Scalar>, String> {
        let mut out = Vec::new();
        if self.eat(&Token::RBracket) {
            return Ok(out);
        }
        loop {
            out.push(self.expr()?);
            if self.eat(&Token::RBracket) {
                return Ok(out);
            }
            self.expect(&Token::Comma)?;
        }
    }

    fn args(&mut self) -> Result<Vec<Scalar>, String> {
        self.expect(&Token::LParen)?;
        let mut out = Vec::new();
        loop {
            out.push(self.expr()?);
            if self.eat(&Token::RParen) {
                return Ok(out);
            }
            self.expect(&Token::Comma)?;
        }
    }
}

fn infix(t: &Token) -> Option<(ScalarFn, u8)> {
    Some(match t {
        Token::OrOr => (ScalarFn::Or, 1),
        Token::AndAnd => (ScalarFn::And, 2),
        Token::Lt => (ScalarFn::Lt, 3),
        Token::Le => (ScalarFn::Le, 3),
        Token::Gt => (ScalarFn::Gt, 3),
        Token::Ge => (ScalarFn::Ge, 3),
        Token::EqEq => (ScalarFn::Eq, 3),
        Token::Ne => (ScalarFn::Ne, 3),
        Token::Plus => (ScalarFn::Add, 4),
        Token::Minus => (ScalarFn::Sub, 4),
        Token::Star => (ScalarFn::Mul, 5),
        Token::Slash => (ScalarFn::Div, 5),
        _ => return None,
    })
}
