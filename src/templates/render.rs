//! `${{ … }}` rendering, compatible with what Backstage template authors write.
//!
//! Backstage renders with Nunjucks; paved uses minijinja configured the same way: `${{ expr }}`
//! for expressions, `{% if %}` blocks, Nunjucks filters plus Backstage's `parseEntityRef`,
//! `pick` and `dump`. Like Backstage, a string that is exactly one `${{ expr }}` keeps the
//! expression's JSON type (a number stays a number). Unlike Nunjucks, an undefined value is an
//! error, not an empty string: a typo must not provision something nameless. Use
//! `| default(...)` for optional values.

use std::collections::BTreeSet;

use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior,
    syntax::SyntaxConfig,
    value::{Serde, Value as MjValue},
};
use serde_json::{Map, Value};

use crate::vocab::entity_ref::EntityRef;

/// A rendering failure, naming where in the spec it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RenderError {
    pub path: String,
    pub message: String,
}

pub struct Renderer {
    env: Environment<'static>,
}

/// A rendering context, converted once and reused for every string of a spec. Cloning one
/// shares it (a large document, like the price book, is converted once and put in many).
#[derive(Debug, Clone)]
pub struct Context(MjValue);

impl Context {
    pub fn new(v: &Value) -> Self {
        Self::of(v)
    }

    /// Any serializable value, converted directly (no JSON tree in between).
    pub fn of<T: serde::Serialize>(v: &T) -> Self {
        Self(MjValue::from(Serde(v)))
    }

    /// An object of named contexts, each shared, not copied.
    pub fn object<'k>(entries: impl IntoIterator<Item = (&'k str, Context)>) -> Self {
        Self(MjValue::from_pairs(
            entries.into_iter().map(|(k, v)| (MjValue::from(k), v.0)),
        ))
    }
}

/// Template names the renderer's loader answers: the rest of the name is the source. (A
/// template's own `{% include %}` of any other name finds nothing, as without a loader.)
const INLINE: &str = "paved-inline:";
/// The variable a typed expression is assigned to, so a cached template can return it.
const RESULT: &str = "__paved_value";

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .variable_delimiters("${{", "}}")
                .build()
                .expect("static delimiters are valid"),
        );
        // SemiStrict: printing or reading through an undefined value fails, `{% if x %}` on an
        // absent optional parameter is false (as authors expect from Nunjucks).
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // Each distinct string is compiled once and kept (named by its source, see INLINE):
        // compiling was most of rendering, and the strings are the offerings' own, a bounded
        // set. Names decide nothing else: no escaping whatever the source ends with.
        env.set_loader(|name| Ok(name.strip_prefix(INLINE).map(str::to_owned)));
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.add_filter("dump", dump);
        env.add_filter("parseEntityRef", parse_entity_ref);
        env.add_filter("pick", pick);
        env.add_filter("slug", slug);
        env.add_filter("truncate", truncate);
        Self { env }
    }

    /// Renders every string of `spec` (recursively) against `ctx`.
    pub fn render_value(&self, spec: &Value, ctx: &Context) -> Result<Value, RenderError> {
        self.walk(spec, ctx, "")
    }

    fn walk(&self, node: &Value, ctx: &Context, path: &str) -> Result<Value, RenderError> {
        Ok(match node {
            Value::String(s) => self.render_str(s, ctx).map_err(|message| RenderError {
                path: if path.is_empty() {
                    "(root)".into()
                } else {
                    path.to_owned()
                },
                message,
            })?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.walk(v, ctx, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.insert(k.clone(), self.walk(v, ctx, &child)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// Renders one string. Exactly one `${{ expr }}` keeps its type.
    pub fn render_str(&self, s: &str, ctx: &Context) -> Result<Value, String> {
        if !s.contains("${{") && !s.contains("{%") {
            return Ok(Value::String(s.to_owned()));
        }
        if let Some(expr) = single_expression(s) {
            // Cached as a template assigning the value; anything that does not come out of
            // that as a value is answered by the expression itself, errors included, so
            // what a string gives (or why it fails) is what it always was.
            // (An expression with `%` or `#` might close the block: it is not cached.)
            if !expr.contains(['%', '#'])
                && let Ok(tmpl) = self
                    .env
                    .get_template(&inline(&["{% set ", RESULT, " = (", expr, ") %}"]))
                && let Ok(done) = tmpl.render_captured(ctx.0.clone())
                && let Some(value) = done.state().lookup(RESULT)
                && !value.is_undefined()
            {
                return serde_json::to_value(&value).map_err(|e| e.to_string());
            }
            let compiled = self.env.compile_expression(expr).map_err(describe)?;
            let value = compiled.eval(ctx.0.clone()).map_err(describe)?;
            if value.is_undefined() {
                return Err(format!("`{}` is undefined", expr.trim()));
            }
            return serde_json::to_value(&value).map_err(|e| e.to_string());
        }
        let tmpl = self.env.get_template(&inline(&[s])).map_err(describe)?;
        let out = tmpl.render(ctx.0.clone()).map_err(describe)?;
        Ok(Value::String(out))
    }

    /// Checks the syntax of every string in `spec` and returns the variables it reads
    /// (`parameters.name`, `preset.storage_gb`, ...), for lint.
    pub fn variables(&self, spec: &Value) -> Result<BTreeSet<String>, RenderError> {
        let mut out = BTreeSet::new();
        self.collect(spec, "", &mut out)?;
        Ok(out)
    }

    fn collect(
        &self,
        node: &Value,
        path: &str,
        out: &mut BTreeSet<String>,
    ) -> Result<(), RenderError> {
        match node {
            Value::String(s) if s.contains("${{") || s.contains("{%") => {
                let err = |message: String| RenderError {
                    path: if path.is_empty() {
                        "(root)".into()
                    } else {
                        path.to_owned()
                    },
                    message,
                };
                let tmpl = self
                    .env
                    .template_from_str(s)
                    .map_err(|e| err(describe(e)))?;
                out.extend(tmpl.undeclared_variables(true));
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.collect(v, &format!("{path}[{i}]"), out)?;
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.collect(v, &child, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The name the loader answers with `source` (pieces joined; cheaper than `format!` here).
fn inline(source: &[&str]) -> String {
    let mut name =
        String::with_capacity(INLINE.len() + source.iter().map(|p| p.len()).sum::<usize>());
    name.push_str(INLINE);
    source.iter().for_each(|p| name.push_str(p));
    name
}

/// `"${{ parameters.size }}"` → `Some(" parameters.size ")`; anything around it → `None`.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("${{")?.strip_suffix("}}")?;
    (!inner.contains("${{") && !inner.contains("}}")).then_some(inner)
}

fn describe(e: Error) -> String {
    let detail = e.detail().map(str::to_owned);
    match (e.kind(), detail) {
        (ErrorKind::UndefinedError, _) => {
            "uses an undefined value (unknown variable or missing parameter; add `| default(...)` for optional ones)"
                .to_owned()
        }
        (_, Some(d)) => format!("{}: {d}", e.kind()),
        (_, None) => e.kind().to_string(),
    }
}

fn dump(v: MjValue) -> Result<String, Error> {
    serde_json::to_string(&v).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// Backstage's `parseEntityRef`: `"group:default/team-a"` → `{kind, namespace, name}`.
fn parse_entity_ref(v: String) -> Result<MjValue, Error> {
    let r = EntityRef::parse(&v, "group")
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("parseEntityRef: {e}")))?;
    Ok(MjValue::from(Serde(serde_json::json!({
        "kind": r.kind(), "namespace": r.namespace(), "name": r.name()
    }))))
}

/// Backstage's `pick`: reads one key of an object.
fn pick(v: MjValue, key: String) -> Result<MjValue, Error> {
    v.get_attr(&key)
}

/// Lower-case, with runs of other characters turned into single dashes (`feature/Login` →
/// `feature-login`): for names derived from branches.
fn slug(v: String) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// Nunjucks' `truncate(length=255, killwords=false, end="...")`.
fn truncate(
    v: String,
    length: Option<usize>,
    killwords: Option<bool>,
    end: Option<String>,
) -> String {
    let length = length.unwrap_or(255);
    if v.chars().count() <= length {
        return v;
    }
    let end = end.unwrap_or_else(|| "...".to_owned());
    let mut cut: String = v.chars().take(length).collect();
    if !killwords.unwrap_or(false)
        && let Some(i) = cut.rfind(' ')
    {
        cut.truncate(i);
    }
    cut + &end
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "parameters": {"name": "orders", "environment": "prod", "storage_gb": 100,
                           "multi_az": false, "owner": "group:default/team-a", "branch": "feature/Login_Page"},
            "preset": {"instance_class": "db.t3.small", "storage_gb": 50}
        })
    }

    fn render(s: &str) -> Result<Value, String> {
        Renderer::new().render_str(s, &Context::new(&ctx()))
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Value)> = vec![
            ("plain text", json!("plain text")),
            ("${{ parameters.storage_gb }}", json!(100)),
            ("  ${{ parameters.multi_az }} ", json!(false)),
            (
                "${{ parameters.name }}-${{ parameters.environment }}",
                json!("orders-prod"),
            ),
            (
                "${{ parameters.instance_class | default(preset.instance_class) }}",
                json!("db.t3.small"),
            ),
            ("${{ parameters.name | upper }}", json!("ORDERS")),
            (
                "${{ parameters.name | replace('o', '0') }}",
                json!("0rders"),
            ),
            (
                "${{ (parameters.owner | parseEntityRef).name }}",
                json!("team-a"),
            ),
            (
                "${{ parameters.owner | parseEntityRef | pick('kind') }}",
                json!("group"),
            ),
            (
                "${{ parameters | dump }}",
                json!(ctx()["parameters"].to_string()),
            ),
            (
                "{% if parameters.environment == 'prod' %}ha{% else %}single{% endif %}",
                json!("ha"),
            ),
            (
                "{% if parameters.optional %}yes{% else %}no{% endif %}",
                json!("no"),
            ),
            ("${{ parameters.storage_gb * 2 }}", json!(200)),
            ("${{ 'x' if parameters.multi_az else 'y' }}", json!("y")),
            (
                "${{ parameters.branch | slug }}",
                json!("feature-login-page"),
            ),
            (
                "${{ parameters.branch | slug | truncate(7, true, '') }}",
                json!("feature"),
            ),
            ("${{ 'one two three' | truncate(9) }}", json!("one two...")),
            ("${{ parameters.name | truncate(10) }}", json!("orders")),
            ("{{ not templated }}", json!("{{ not templated }}")),
        ];
        for (input, expected) in cases {
            assert_eq!(render(input), Ok(expected.clone()), "{input}");
        }
    }

    #[test]
    fn unknown_variables_are_errors() {
        for bad in [
            "${{ parametrs.name }}",
            "${{ parameters.nope }}",
            "db-${{ parameters.nope }}",
            "${{ parameters.nope.deeper }}",
        ] {
            let err = render(bad).unwrap_err();
            assert!(err.contains("undefined"), "{bad}: {err}");
        }
    }

    #[test]
    fn syntax_errors_and_paths_are_reported() {
        let r = Renderer::new();
        let err = r
            .render_value(
                &json!({"a": {"b": ["ok", "${{ parameters.nope }}"]}}),
                &Context::new(&ctx()),
            )
            .unwrap_err();
        assert_eq!(err.path, "a.b[1]");
        assert!(
            r.render_str("${{ parameters.name | }}", &Context::new(&ctx()))
                .is_err()
        );
    }

    #[test]
    fn a_compiled_string_is_rendered_afresh_for_each_context() {
        let r = Renderer::new();
        let other = Context::new(&json!({"parameters": {"name": "billing", "storage_gb": 7}}));
        for _ in 0..2 {
            for (ctx, name, gb) in [
                (Context::new(&ctx()), "orders", 100),
                (other.clone(), "billing", 7),
            ] {
                assert_eq!(
                    r.render_str("db-${{ parameters.name }}", &ctx),
                    Ok(json!(format!("db-{name}")))
                );
                assert_eq!(
                    r.render_str("${{ parameters.storage_gb }}", &ctx),
                    Ok(json!(gb))
                );
            }
        }
        // A value absent from one context is an error there, whatever another context held.
        let err = r
            .render_str("${{ parameters.multi_az }}", &other)
            .unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert_eq!(
            r.render_str("${{ parameters.multi_az }}", &Context::new(&ctx())),
            Ok(json!(false))
        );
    }

    #[test]
    fn cached_strings_are_not_escaped_and_include_nothing() {
        let r = Renderer::new();
        let c = Context::new(&json!({"parameters": {"name": "<a & b>"}}));
        for s in [
            "${{ parameters.name }}.html",
            "${{ parameters.name }} in values.yaml",
        ] {
            assert!(
                r.render_str(s, &c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .starts_with("<a & b>"),
                "{s}"
            );
        }
        assert!(r.render_str("{% include 'x' %}", &c).is_err());
        assert!(r.render_str("{% include 'paved-inline' %}", &c).is_err());
    }

    #[test]
    fn shared_contexts_combine() {
        let prices = Context::new(&json!({"gb": 0.5}));
        let ctx = Context::object([
            ("prices", prices.clone()),
            ("parameters", Context::of(&json!({"n": 4}))),
        ]);
        assert_eq!(
            Renderer::new().render_str("${{ parameters.n * prices.gb }}", &ctx),
            Ok(json!(2.0))
        );
    }

    #[test]
    fn collects_variables() {
        let vars = Renderer::new()
            .variables(&json!({"x": "${{ parameters.name }}-${{ preset.size | default(parameters.size) }}", "y": 3}))
            .unwrap();
        assert!(vars.contains("parameters.name"), "{vars:?}");
        assert!(vars.contains("parameters.size"), "{vars:?}");
        assert!(vars.contains("preset.size"), "{vars:?}");
    }
}
