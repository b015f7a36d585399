//! Lists that scale: `limit` and an opaque keyset `cursor` (the next page
//! in a `Link: <…>; rel="next"` header), `sort` by one of a list's fields
//! (`-` for descending), and `X-Total-Count`, the number of items matching
//! the filters. The answer stays a bare JSON array.
//!
//! A page starts strictly after the cursor's position in the order
//! `(sort field, unique id)`, so an item is never served twice and an
//! item present throughout is never skipped, whatever is inserted or
//! deleted meanwhile (items whose sort field changes between two pages may
//! move across the cursor, as in any keyset walk).
//!
//! The selection runs in memory over the matching items (the catalog view
//! already holds every project; spokes are few): see docs/decisions.md,
//! "Lists that scale".

use std::borrow::Cow;
use std::cmp::Ordering;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::field_error::{sort_by_field, FieldError};
use crate::rules::{self, Paging};

/// `limit`: 1 to 1000; absent, the whole list (as the original served it).
pub const PAGES: Paging = Paging {
    default: 100,
    max: 1000,
};

/// Longest cursor accepted (ours are far shorter).
const MAX_CURSOR_LEN: usize = 1024;
/// Longest `q`.
pub const MAX_Q_LEN: usize = 200;

pub const TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

/// A value an item sorts by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "lowercase")]
pub enum SortValue<'a> {
    Text(Cow<'a, str>),
    /// Absent times sort first.
    Time(Option<DateTime<Utc>>),
    Rank(u8),
}

/// Something listed: the fields it sorts by, and a unique id breaking ties.
pub trait Listed {
    /// The sort fields offered, the default first.
    const SORTS: &'static [&'static str];
    /// The value of `field`, one of [`Self::SORTS`].
    fn sort_value(&self, field: &str) -> SortValue<'_>;
    /// Unique among the list's items; the default sort field's order when
    /// `Self::SORTS[0]` is it.
    fn unique(&self) -> &str;
}

/// Where the previous page ended, as the client carries it (opaque).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// The sort it was made for.
    s: String,
    k: SortValue<'static>,
    u: String,
}

/// A checked request for one page.
#[derive(Debug, Clone)]
pub struct Listing {
    field: &'static str,
    desc: bool,
    after: Option<Cursor>,
    limit: Option<usize>,
}

/// One page.
pub struct Page<'a, T> {
    pub items: Vec<&'a T>,
    /// Items matching the filters, in all pages.
    pub total: usize,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

impl Listing {
    /// Checks `sort`, `cursor` and `limit` for a list of `T`, adding what is
    /// wrong to `problems`.
    pub fn check<T: Listed>(
        sort: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
        problems: &mut Vec<FieldError>,
    ) -> Option<Listing> {
        let mut ok = true;
        let limit = match limit {
            None => None,
            Some(l) => match PAGES.check(Some(l), None) {
                Ok(l) => Some(l as usize),
                Err(e) => {
                    problems.extend(e);
                    ok = false;
                    None
                }
            },
        };
        let given = sort.unwrap_or(T::SORTS[0]);
        let (desc, name) = match given.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, given),
        };
        let field = T::SORTS.iter().find(|f| **f == name).copied();
        if field.is_none() {
            problems.push(FieldError::new(
                "sort",
                format!(
                    "must be one of: {} (each also with a leading '-' for descending)",
                    T::SORTS.join(", ")
                ),
            ));
            ok = false;
        }
        let after = match cursor {
            None => None,
            Some(c) => match decode(c) {
                Some(c) if c.s == given => Some(c),
                Some(_) => {
                    problems.push(FieldError::new(
                        "cursor",
                        "belongs to another sort: keep the sort of the page that gave it",
                    ));
                    ok = false;
                    None
                }
                None => {
                    problems.push(FieldError::new(
                        "cursor",
                        "is not a cursor this list gave (take it from the Link header)",
                    ));
                    ok = false;
                    None
                }
            },
        };
        let field = field?;
        ok.then_some(Listing {
            field,
            desc,
            after,
            limit,
        })
    }

    /// Checks a list route's text filter `q` and its page parameters
    /// (`sort`, `cursor`, `limit`) for a list of `T`, after the filters'
    /// own `problems`: the lower-cased `q` and the listing, or every
    /// problem, sorted by field.
    pub fn check_with_q<T: Listed>(
        q: Option<&str>,
        (sort, cursor, limit): (Option<&str>, Option<&str>, Option<i64>),
        mut problems: Vec<FieldError>,
    ) -> Result<(Option<String>, Listing), Vec<FieldError>> {
        let q = check_q(q, &mut problems);
        let listing = Listing::check::<T>(sort, cursor, limit, &mut problems);
        match listing.filter(|_| problems.is_empty()) {
            Some(listing) => Ok((q, listing)),
            None => {
                sort_by_field(&mut problems);
                Err(problems)
            }
        }
    }

    fn sort_name(&self) -> String {
        if self.desc {
            format!("-{}", self.field)
        } else {
            self.field.to_owned()
        }
    }

    /// The page of `matching` (every item that passed the filters).
    /// `by_unique`: they come in ascending order of [`Listed::unique`].
    pub fn page<'a, T: Listed>(&self, matching: Vec<&'a T>, by_unique: bool) -> Page<'a, T> {
        let total = matching.len();
        let field = self.field;
        let desc = self.desc;
        let order = |a: (SortValue<'_>, &str), b: (SortValue<'_>, &str)| {
            let o = a.cmp(&b);
            if desc {
                o.reverse()
            } else {
                o
            }
        };
        let key = |t: &'a T| (t.sort_value(field), t.unique());
        // Sorted by the unique field, the items already come in page order
        // (reversed when descending): the cursor is found by bisection and
        // the page is the next `limit`, with no pass comparing every item
        // (a million hubs: a page in milliseconds, not a second).
        if by_unique && T::SORTS[0] == field {
            let mut rest = matching;
            if desc {
                rest.reverse();
            }
            if let Some(c) = &self.after {
                let at = (c.k.clone(), c.u.as_str());
                let start =
                    rest.partition_point(|t| order(key(t), at.clone()) != Ordering::Greater);
                rest.drain(..start);
            }
            let more = self.limit.is_some_and(|l| rest.len() > l);
            if let Some(l) = self.limit {
                rest.truncate(l);
            }
            return self.finish(rest, total, more);
        }
        let mut rest: Vec<&'a T> = match &self.after {
            None => matching,
            Some(c) => {
                let at = (c.k.clone(), c.u.as_str());
                matching
                    .into_iter()
                    .filter(|t| order(key(t), at.clone()) == Ordering::Greater)
                    .collect()
            }
        };
        let cmp = |a: &&'a T, b: &&'a T| order(key(a), key(b));
        let more = self.limit.is_some_and(|l| rest.len() > l);
        if let Some(l) = self.limit.filter(|_| more) {
            rest.select_nth_unstable_by(l, cmp);
            rest.truncate(l);
        }
        rest.sort_unstable_by(cmp);
        self.finish(rest, total, more)
    }

    /// The page of `items` (in order, at most `limit`), and the cursor after
    /// its last item when `more` follow.
    fn finish<'a, T: Listed>(&self, items: Vec<&'a T>, total: usize, more: bool) -> Page<'a, T> {
        let field = self.field;
        let next = if more {
            items.last().map(|t| {
                encode(&Cursor {
                    s: self.sort_name(),
                    k: owned(t.sort_value(field)),
                    u: t.unique().to_owned(),
                })
            })
        } else {
            None
        };
        Page { items, total, next }
    }
}

fn owned(v: SortValue<'_>) -> SortValue<'static> {
    match v {
        SortValue::Text(t) => SortValue::Text(Cow::Owned(t.into_owned())),
        SortValue::Time(t) => SortValue::Time(t),
        SortValue::Rank(r) => SortValue::Rank(r),
    }
}

fn encode(c: &Cursor) -> String {
    BASE64URL_NOPAD.encode(&serde_json::to_vec(c).unwrap_or_default())
}

fn decode(s: &str) -> Option<Cursor> {
    if s.len() > MAX_CURSOR_LEN {
        return None;
    }
    let bytes = BASE64URL_NOPAD.decode(s.as_bytes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `q`: 1 to 200 characters, no control characters; lower-cased for
/// [`contains_ci`]. Problems go to `problems`.
pub fn check_q(q: Option<&str>, problems: &mut Vec<FieldError>) -> Option<String> {
    let q = q?;
    if q.is_empty() || q.chars().count() > MAX_Q_LEN || q.chars().any(char::is_control) {
        problems.push(FieldError::new(
            "q",
            format!("must be 1 to {MAX_Q_LEN} characters, without control characters"),
        ));
        return None;
    }
    Some(q.to_lowercase())
}

/// Whether `hay` contains `needle` (already lower-case), ignoring case.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        return n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle)
}

/// The response headers of a page: `X-Total-Count`, and `Link` to the next
/// page (this request's path and query with the new cursor) if any.
pub fn headers(path: &str, query: Option<&str>, total: usize, next: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(TOTAL_COUNT, HeaderValue::from(total));
    if let Some(next) = next {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if k != "cursor" {
                q.append_pair(&k, &v);
            }
        }
        q.append_pair("cursor", next);
        let link = format!("<{path}?{}>; rel=\"next\"", q.finish());
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(axum::http::header::LINK, v);
        }
    }
    h
}

pub fn limit_schema() -> Object {
    PAGES.limit_schema_without_default()
}

pub fn cursor_schema() -> Object {
    rules::nonempty_string(MAX_CURSOR_LEN).build()
}

pub fn q_schema() -> Object {
    rules::nonempty_string(MAX_Q_LEN)
        .pattern(Some(r"^[^\x00-\x1f\x7f-\x9f]+$"))
        .build()
}

/// The `sort` parameter's schema: the fields, each also with `-`. A
/// pattern rather than an enum, so a wrong value is reported with the
/// other parameters' problems, naming the accepted ones.
pub fn sort_schema<T: Listed>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^-?({})$", T::SORTS.join("|"))))
        .default(Some(T::SORTS[0].into()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(&'static str, &'static str);

    impl Listed for Item {
        const SORTS: &'static [&'static str] = &["id", "name"];
        fn sort_value(&self, field: &str) -> SortValue<'_> {
            match field {
                "name" => SortValue::Text(Cow::Borrowed(self.1)),
                _ => SortValue::Text(Cow::Borrowed(self.0)),
            }
        }
        fn unique(&self) -> &str {
            self.0
        }
    }

    fn walk(items: &[Item], sort: Option<&str>, limit: i64) -> Vec<&'static str> {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut problems = Vec::new();
            let l = Listing::check::<Item>(sort, cursor.as_deref(), Some(limit), &mut problems)
                .unwrap();
            let page = l.page(items.iter().collect(), true);
            assert_eq!(page.total, items.len());
            seen.extend(page.items.iter().map(|i| i.0));
            match page.next {
                Some(n) => cursor = Some(n),
                None => return seen,
            }
        }
    }

    #[test]
    fn pages_walk_every_item_once_in_order() {
        let items = [
            Item("a", "zed"),
            Item("b", "amy"),
            Item("c", "amy"),
            Item("d", "bob"),
            Item("e", "Amy"),
        ];
        assert_eq!(walk(&items, None, 2), ["a", "b", "c", "d", "e"]);
        assert_eq!(walk(&items, Some("-id"), 2), ["e", "d", "c", "b", "a"]);
        assert_eq!(walk(&items, Some("name"), 2), ["e", "b", "c", "d", "a"]);
        assert_eq!(walk(&items, Some("-name"), 3), ["a", "d", "c", "b", "e"]);
    }

    #[test]
    fn bad_parameters_are_each_named() {
        let mut problems = Vec::new();
        assert!(Listing::check::<Item>(Some("size"), Some("!!"), Some(0), &mut problems).is_none());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["limit", "sort", "cursor"]);
        // A cursor of one sort is refused under another.
        let items = [Item("a", "x"), Item("b", "y")];
        let mut problems = Vec::new();
        let l = Listing::check::<Item>(Some("name"), None, Some(1), &mut problems).unwrap();
        let next = l.page(items.iter().collect(), true).next.unwrap();
        assert!(Listing::check::<Item>(None, Some(&next), Some(1), &mut problems).is_none());
        assert_eq!(problems[0].field, "cursor");
    }

    #[test]
    fn case_is_ignored_by_q() {
        assert!(contains_ci("Alpha Hub", "hub"));
        assert!(contains_ci("ÉCOLE", "éco"));
        assert!(!contains_ci("beta", "alpha"));
    }
}
