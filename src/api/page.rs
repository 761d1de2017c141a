//! One list shape for every list of the API: `{items, nextCursor?}`, with `limit` and `cursor`
//! read and checked here, so the rule is written once.
//!
//! Cursors are keyset positions (the last item's key), so a page never repeats or skips an
//! item that existed when the walk began, whatever is inserted meanwhile. They are opaque to
//! clients: base64url of the list's name and the key, so a cursor of one list is refused by
//! another instead of silently meaning something else.

use axum::{extract::FromRequestParts, http::request::Parts};
use base64::Engine as _;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::ApiError;

/// Page size when the caller gives none.
pub const DEFAULT_LIMIT: u64 = 100;
/// The largest page a caller may ask for.
pub const MAX_LIMIT: u64 = 500;

/// One page of a list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// Written by hand so items refer to their type's schema: the derive copies it into every page
// schema, and generated clients would get a second, anonymous `Request` type. `utoipa::path`
// builds generic bodies through this (hidden) trait, handing it each argument's inlined
// schema, which is ignored here; utoipa derives `PartialSchema` from it. (utoipa is pinned in
// Cargo.lock; the API document's drift test shows any change.)
impl<T: utoipa::ToSchema> utoipa::__dev::ComposeSchema for Page<T> {
    fn compose(
        _: Vec<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
    ) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Ref, Type};
        ObjectBuilder::new()
            .description(Some("One page of a list."))
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("items")
            .property(
                "nextCursor",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "Pass as `cursor` to get the next page; absent on the last page.",
                    )),
            )
            .into()
    }
}

impl<T: utoipa::ToSchema> utoipa::ToSchema for Page<T> {
    // utoipa appends the argument: `Page_Request`, one named schema per list.
    fn name() -> std::borrow::Cow<'static, str> {
        "Page".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

impl<T> Page<T> {
    /// The page from up to `limit + 1` rows in list order: the extra row only says that
    /// another page follows, and the last kept row's key is where it starts.
    pub fn from_rows(
        mut rows: Vec<T>,
        paging: &Paging,
        list: &str,
        key: impl Fn(&T) -> String,
    ) -> Self {
        let limit = paging.limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode(list, &key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// A page of a list held in memory, already in list order and unique by `key`.
    pub fn of_sorted(
        all: impl IntoIterator<Item = T>,
        paging: &Paging,
        list: &str,
        key: impl Fn(&T) -> String,
    ) -> Result<Self, ApiError> {
        let after = paging.after(list)?;
        let rows: Vec<T> = all
            .into_iter()
            .filter(|item| after.as_deref().is_none_or(|a| key(item).as_str() > a))
            .take(paging.limit as usize + 1)
            .collect();
        Ok(Self::from_rows(rows, paging, list, key))
    }
}

/// The documentation of `limit` and `cursor`, added to every list operation.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Page size: 1 to 500 (default 100). The same rule on every list.
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<u64>,
    /// The `nextCursor` of the previous page, passed unchanged (opaque; valid for this list only).
    cursor: Option<String>,
}

/// `limit` and `cursor`, checked.
#[derive(Debug, Clone)]
pub struct Paging {
    /// How many items the page holds at most.
    pub limit: u64,
    cursor: Option<String>,
}

impl Paging {
    /// How many rows to read: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> u64 {
        self.limit + 1
    }

    /// The key the page starts after, from the cursor of `list`; a cursor that is not one
    /// (edited, truncated, or another list's) is a 400 naming `cursor`.
    pub fn after(&self, list: &str) -> Result<Option<String>, ApiError> {
        let Some(raw) = &self.cursor else {
            return Ok(None);
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|s| {
                s.split_once('\n')
                    .filter(|(l, _)| *l == list)
                    .map(|(_, k)| k.to_owned())
            })
            .map(Some)
            .ok_or_else(bad_cursor)
    }

    /// As [`after`](Self::after), for lists keyed by a number.
    pub fn after_number(&self, list: &str) -> Result<Option<i64>, ApiError> {
        self.after(list)?
            .map(|k| k.parse().map_err(|_| bad_cursor()))
            .transpose()
    }

    /// As [`after`](Self::after), for lists keyed by a UUID.
    pub fn after_uuid(&self, list: &str) -> Result<Option<String>, ApiError> {
        self.after(list)?
            .map(|k| {
                uuid::Uuid::parse_str(&k)
                    .map(|_| k)
                    .map_err(|_| bad_cursor())
            })
            .transpose()
    }
}

fn encode(list: &str, key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{list}\n{key}"))
}

fn bad_cursor() -> ApiError {
    field_error(
        "cursor",
        "format",
        "is not a cursor of this list; pass the nextCursor of the previous page unchanged",
    )
}

fn field_error(field: &str, rule: &str, message: &str) -> ApiError {
    let e = crate::vocab::field_error::FieldError {
        field: field.into(),
        rule: rule.into(),
        message: message.into(),
    };
    ApiError::input(e.to_string())
        .with_reason_phrase(&format!("Invalid input: {e}"))
        .with_detail("errors", [e])
}

/// A list's own query parameters (`F`, which should refuse unknown fields) and its paging.
pub struct Paged<F> {
    pub filter: F,
    pub paging: Paging,
}

/// For lists without filters of their own.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilter {}

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for Paged<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let mut limit = None;
        let mut cursor = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "limit" => &mut limit,
                "cursor" => &mut cursor,
                _ => {
                    rest.append_pair(&k, &v);
                    continue;
                }
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(field_error(&k, "unique", "is given more than once"));
            }
        }
        let range = format!("must be a whole number from 1 to {MAX_LIMIT}");
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<u64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| field_error("limit", "range", &range))?,
        };
        let rest = rest.finish();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(rest.as_bytes()));
        let filter = serde_path_to_error::deserialize(de).map_err(|e| {
            ApiError::input(format!(
                "invalid query parameter {}: {}",
                e.path(),
                e.inner()
            ))
        })?;
        Ok(Self {
            filter,
            paging: Paging { limit, cursor },
        })
    }
}
