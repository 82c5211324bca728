//! Compiling and running one Go template with ESO's options (`missingkey=error`, sprig
//! functions) and hard bounds on output size, work and time.
//!
//! The template language itself is the `gotmpl` crate. Around it: a parse-time check
//! for unknown functions (Go rejects them at parse time, gotmpl only when executed),
//! an AST pass that adds a budget step to every `range` iteration and template call
//! (so a template cannot spin without output), and a capped writer.

use std::sync::Arc;

use gotmpl::parse::{ActionNode, CommandNode, Expr, ListNode, Node, PipeNode, SmolStr};
use gotmpl::{FuncMap, MissingKey, Template, Value};

use super::budget::{Budget, LIMIT_MARK};
use super::funcs;

/// `range` iterations allowed in one execution, across all loops.
const MAX_RANGE_ITERS: u64 = 100_000;
/// Longest template source accepted.
pub const MAX_SOURCE: usize = 1 << 20;

/// Name of the budget function the AST pass inserts; users calling it only spend a step.
const STEP_FN: &str = "__vaultgate_step";

/// Why a template did not produce output. Messages name positions and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// Syntax error or unknown function; the message carries `line:col`.
    Parse(String),
    /// Failed while executing (missing key, function error, type error).
    Exec(String),
    /// A bound was hit (output size, steps, time, range iterations, recursion).
    Limit(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Parse(m) | EngineError::Exec(m) | EngineError::Limit(m) => f.write_str(m),
        }
    }
}

/// The functions of one execution: the sprig/ESO set and the budget step the AST pass
/// inserts, all counted against `budget`.
fn function_map(budget: &Arc<Budget>) -> FuncMap {
    let mut map = funcs::function_map(budget);
    let b = Arc::clone(budget);
    map.insert(
        STEP_FN.to_string(),
        Arc::new(move |_: &[Value]| {
            b.step()?;
            Ok(Value::String("".into()))
        }),
    );
    map
}

/// A parsed template ready to run.
pub struct Compiled {
    template: Template,
    entry: String,
    budget: Arc<Budget>,
    /// Body is whitespace only: gotmpl keeps no named tree for it; it runs no action.
    plain: Option<Template>,
    src: String,
    uses: Uses,
}

/// Parses `src` (named `name` in messages) with ESO's `missingkey=error`. Errors
/// carry `line:col`.
pub fn compile(name: &str, src: &str) -> Result<Compiled, EngineError> {
    compile_with(name, src, MissingKey::Error)
}

/// As [`compile`], with Go's default for missing keys (`<no value>`), as ESO runs
/// `rewrite.transform` templates.
pub fn compile_lenient(name: &str, src: &str) -> Result<Compiled, EngineError> {
    compile_with(name, src, MissingKey::Invalid)
}

fn compile_with(name: &str, src: &str, missing: MissingKey) -> Result<Compiled, EngineError> {
    let (parsed, mut bodies, uses) = parse_checked(name, src)?;
    let budget = Arc::new(Budget::new());
    let mut template = Template::new(name)
        .funcs(function_map(&budget))
        .missing_key(missing)
        .max_range_iters(MAX_RANGE_ITERS);
    for (n, body) in bodies.iter_mut() {
        instrument(body, true);
        template = template.add_parse_tree(n, body.clone());
    }
    let plain = parsed.lookup(name).is_none().then_some(parsed);
    Ok(Compiled {
        template,
        entry: name.to_string(),
        budget,
        plain,
        src: src.to_string(),
        uses,
    })
}

/// Parse-only check, as Go's `Parse` does it (syntax, unknown functions).
pub fn check(name: &str, src: &str) -> Result<(), EngineError> {
    parse_checked(name, src).map(|_| ())
}

type Bodies = Vec<(String, ListNode)>;

fn parse_checked(name: &str, src: &str) -> Result<(Template, Bodies, Uses), EngineError> {
    if src.len() > MAX_SOURCE {
        return Err(EngineError::Limit(format!(
            "template {name} is longer than {MAX_SOURCE} bytes"
        )));
    }
    // gotmpl resolves functions only when executing, so parsing needs no function map.
    let parsed = Template::new(name)
        .parse(src)
        .map_err(|e| EngineError::Parse(e.to_string()))?;

    check_structure(name, src)?;

    // Unknown functions, checked over every body as Go's parser does.
    let bodies: Bodies = parsed
        .templates()
        .into_iter()
        .filter_map(|n| parsed.lookup(n).map(|t| (n.to_string(), t.clone())))
        .collect();
    let mut uses = Uses::default();
    for (_, body) in &bodies {
        uses.list(body);
    }
    if let Some((f, off)) = uses
        .funcs
        .iter()
        .filter(|(f, _)| !funcs::known(f) && f != STEP_FN)
        .min_by_key(|(_, off)| *off)
    {
        let (line, col) = line_col(src, *off);
        return Err(EngineError::Parse(format!(
            "template: {name}:{line}:{col}: function {f:?} not defined"
        )));
    }

    Ok((parsed, bodies, uses))
}

impl Compiled {
    /// Runs the template on `data`; the output is at most `limit` bytes.
    pub fn execute(&self, data: &Value, limit: usize) -> Result<String, EngineError> {
        self.budget.reset(data);
        let mut out = CappedWriter {
            buf: String::new(),
            limit,
            overflow: false,
        };
        let res = match &self.plain {
            Some(t) => t.execute_fmt(&mut out, data),
            None => self
                .template
                .execute_template_fmt(&mut out, &self.entry, data),
        };
        if out.overflow {
            return Err(EngineError::Limit(format!(
                "output is larger than {limit} bytes"
            )));
        }
        match res {
            Ok(()) => Ok(out.buf),
            Err(e) => Err(self.classify(e)),
        }
    }
}

impl Compiled {
    fn classify(&self, e: gotmpl::TemplateError) -> EngineError {
        use gotmpl::TemplateError as T;
        let name = &self.entry;
        let msg = e.to_string();
        match e {
            T::RecursionLimit | T::RangeIterLimit => {
                EngineError::Limit(format!("template: {name}: {LIMIT_MARK}{msg}"))
            }
            T::Exec(ref m) if m.contains(LIMIT_MARK) => EngineError::Limit(format!(
                "template: {name}: {LIMIT_MARK}{}",
                m.replace(LIMIT_MARK, "")
            )),
            T::MissingKey { key } => EngineError::Exec(format!(
                "template: {name}: map has no entry for key {key:?}{}",
                where_used(&self.src, &self.uses.fields, &key)
            )),
            T::UndefinedFunction(f) => {
                EngineError::Exec(format!("template: {name}: function {f:?} not defined"))
            }
            _ => {
                // Function errors start with the function's name.
                let at = self
                    .uses
                    .funcs
                    .iter()
                    .map(|(f, _)| f.as_str())
                    .find(|f| msg.starts_with(&format!("{f}:")) || msg.contains(&format!(" {f}:")))
                    .map(|f| where_used(&self.src, &self.uses.funcs, f))
                    .unwrap_or_default();
                EngineError::Exec(format!("template: {name}: {msg}{at}"))
            }
        }
    }
}

struct CappedWriter {
    buf: String,
    limit: usize,
    overflow: bool,
}

impl std::fmt::Write for CappedWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.buf.len() + s.len() > self.limit {
            self.overflow = true;
            return Err(std::fmt::Error);
        }
        self.buf.push_str(s);
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Go rejects an unclosed `if`/`range`/`with`/`define`/`block` and a stray `end` or
/// `else`; gotmpl accepts them (and drops the text after a stray `end`), so the
/// actions' keywords are matched here.
fn check_structure(name: &str, src: &str) -> Result<(), EngineError> {
    let err = |at: usize, msg: &str| {
        let (line, col) = line_col(src, at);
        Err(EngineError::Parse(format!(
            "template: {name}:{line}:{col}: {msg}"
        )))
    };
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while let Some(found) = src[i..].find("{{") {
        let start = i + found;
        let mut j = start + 2;
        let b = src.as_bytes();
        if b.get(j) == Some(&b'-') && matches!(b.get(j + 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            j += 1;
        }
        // Find the closing delimiter outside comments and quotes.
        let body_start = j;
        let mut end = None;
        while j < b.len() {
            match b[j] {
                b'"' | b'\'' => {
                    let q = b[j];
                    j += 1;
                    while j < b.len() && b[j] != q {
                        if b[j] == b'\\' {
                            j += 1;
                        }
                        j += 1;
                    }
                    j += 1;
                }
                b'`' => {
                    j += 1;
                    while j < b.len() && b[j] != b'`' {
                        j += 1;
                    }
                    j += 1;
                }
                b'/' if b.get(j + 1) == Some(&b'*') => match src[j + 2..].find("*/") {
                    Some(k) => j = j + 2 + k + 2,
                    None => return Ok(()),
                },
                b'}' if b.get(j + 1) == Some(&b'}') => {
                    end = Some(j);
                    break;
                }
                _ => j += 1,
            }
        }
        let Some(end) = end else {
            // Unterminated action: the parser has reported it already.
            return Ok(());
        };
        let body = src[body_start..end].trim_start();
        let word: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        match word.as_str() {
            "if" | "range" | "with" | "define" | "block" => open.push(start),
            "end" if open.pop().is_none() => return err(start, "unexpected {{end}}"),
            "else" if open.is_empty() => return err(start, "unexpected {{else}}"),
            _ => {}
        }
        i = end + 2;
    }
    if let Some(at) = open.last() {
        return err(
            *at,
            "unexpected EOF: an action is never closed with {{end}}",
        );
    }
    Ok(())
}

/// Where each function and each field name appears, as byte offsets, in source order.
#[derive(Default)]
struct Uses {
    funcs: Vec<(String, usize)>,
    fields: Vec<(String, usize)>,
}

impl Uses {
    fn list(&mut self, list: &ListNode) {
        for node in &list.nodes {
            match node {
                Node::List(l) => self.list(l),
                Node::Action(a) => self.pipe(&a.pipe),
                Node::If(b) | Node::Range(b) | Node::With(b) => {
                    self.pipe(&b.pipe);
                    self.list(&b.body);
                    if let Some(e) = &b.else_body {
                        self.list(e);
                    }
                }
                Node::Template(t) => {
                    if let Some(p) = &t.pipe {
                        self.pipe(p);
                    }
                }
                Node::Define(d) => self.list(&d.body),
                Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
            }
        }
    }

    fn pipe(&mut self, pipe: &PipeNode) {
        for cmd in &pipe.commands {
            for arg in &cmd.args {
                self.expr(arg);
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        let mut chain = |pos: usize, names: &[SmolStr]| {
            for n in names {
                self.fields.push((n.to_string(), pos));
            }
        };
        match expr {
            Expr::Identifier(pos, f) => self.funcs.push((f.to_string(), pos.offset)),
            Expr::Field(pos, names) | Expr::Variable(pos, _, names) => chain(pos.offset, names),
            Expr::Chain(pos, inner, names) => {
                chain(pos.offset, names);
                self.expr(inner);
            }
            Expr::Pipe(_, p) => self.pipe(p),
            _ => {}
        }
    }
}

/// `line:col` of every use of `name`, for execution errors (gotmpl reports none).
fn where_used(src: &str, uses: &[(String, usize)], name: &str) -> String {
    let mut at: Vec<String> = uses
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, off)| {
            let (l, c) = line_col(src, *off);
            format!("{l}:{c}")
        })
        .collect();
    at.dedup();
    match at.len() {
        0 => String::new(),
        1..=3 => format!(" (used at {})", at.join(", ")),
        n => format!(
            " (used at {} and {} more places)",
            at[..3].join(", "),
            n - 3
        ),
    }
}

/// Adds a budget step at the start of every loop body and template body, and turns
/// sprig's mutating calls (`$_ := set $d ...`) into assignments so `$d` sees the change,
/// as it does in Go where maps are shared references.
fn instrument(list: &mut ListNode, is_body: bool) {
    for node in list.nodes.iter_mut() {
        match node {
            Node::List(l) => instrument(l, false),
            Node::Action(a) => rewrite_mutation(&mut a.pipe),
            Node::If(b) | Node::With(b) => {
                instrument(&mut b.body, false);
                if let Some(e) = &mut b.else_body {
                    instrument(e, false);
                }
            }
            Node::Range(b) => {
                instrument(&mut b.body, true);
                if let Some(e) = &mut b.else_body {
                    instrument(e, false);
                }
            }
            Node::Define(d) => instrument(&mut d.body, true),
            Node::Text(_) | Node::Template(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }
    if is_body {
        let pos = list.pos;
        list.nodes.insert(
            0,
            Node::Action(ActionNode {
                pos,
                pipe: PipeNode {
                    pos,
                    decl: Vec::new(),
                    commands: vec![CommandNode {
                        pos,
                        args: vec![Expr::Identifier(pos, SmolStr::new(STEP_FN))],
                    }],
                    is_assign: false,
                },
            }),
        );
    }
}

fn rewrite_mutation(pipe: &mut PipeNode) {
    if pipe.commands.len() != 1 {
        return;
    }
    let throwaway = match pipe.decl.as_slice() {
        [] => true,
        [d] => d.as_str() == "$_",
        _ => false,
    };
    if !throwaway {
        return;
    }
    let args = &pipe.commands[0].args;
    let target = match (args.first(), args.get(1)) {
        (Some(Expr::Identifier(_, f)), Some(Expr::Variable(_, var, fields)))
            if matches!(
                f.as_str(),
                "set" | "unset" | "merge" | "mergeOverwrite" | "mustMerge" | "mustMergeOverwrite"
            ) && fields.is_empty()
                && var.as_str() != "$" =>
        {
            var.clone()
        }
        _ => return,
    };
    pipe.decl = vec![target];
    pipe.is_assign = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::budget::MAX_OUTPUT;

    fn run(src: &str) -> Result<String, EngineError> {
        compile("t", src)?.execute(
            &Value::from(std::collections::BTreeMap::<String, Value>::new()),
            MAX_OUTPUT,
        )
    }

    #[test]
    fn structure_check_follows_go() {
        for ok in [
            "{{if 1}}a{{else if 0}}b{{else}}c{{end}}",
            "{{- range list 1 -}} x {{- end -}}",
            "{{/* {{ if */}}plain",
            "{{ \"}}{{ if\" }}",
            "{{ `{{end}}` }}",
            "{{ define \"d\" }}{{ with 1 }}{{ end }}{{ end }}",
        ] {
            assert!(check("t", ok).is_ok(), "{ok}: {:?}", check("t", ok));
        }
        for (bad, msg) in [
            ("{{ if 1 }}", "t:1:1: unexpected EOF"),
            (
                "a\n{{ range list }}{{ end }}{{ end }}",
                "t:2:26: unexpected {{end}}",
            ),
            ("{{ else }}", "t:1:1: unexpected {{else}}"),
        ] {
            let e = check("t", bad).unwrap_err().to_string();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }

    #[test]
    fn step_marker_prints_nothing_and_set_mutates() {
        assert_eq!(run("{{ range 3 }}x{{ end }}").unwrap(), "xxx");
        assert_eq!(
            run("{{ $d := dict }}{{ range list \"a\" \"b\" }}{{ $_ := set $d . 1 }}{{ end }}{{ keys $d | join \",\" }}")
                .unwrap(),
            "a,b"
        );
        // A named result stays a pure call.
        assert_eq!(
            run("{{ $d := dict }}{{ $e := set $d \"k\" 1 }}{{ len $d }}{{ len $e }}").unwrap(),
            "01"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé{{", 6), (2, 3));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}
