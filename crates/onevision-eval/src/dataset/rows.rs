//! Which documents to read ([`Selection`]) and the lazy reader over them ([`Rows`]).

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;

use super::convert::{self, ColumnKind};
use super::{Dataset, Shard, ShardData};
use crate::doc::Row;
use crate::error::{Error, Result};

/// A set of doc_ids, kept as sorted, disjoint, non-empty ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    ranges: Vec<Range<usize>>,
}

impl Selection {
    /// The doc_ids in `range`.
    pub fn range(range: Range<usize>) -> Self {
        let ranges = if range.is_empty() {
            vec![]
        } else {
            vec![range]
        };
        Selection { ranges }
    }

    /// Every document of a split of `len` rows.
    pub fn all(len: usize) -> Self {
        Self::range(0..len)
    }

    /// `offset..offset+limit` clamped to `0..len` (`limit` None: to the end).
    pub fn window(len: usize, offset: usize, limit: Option<usize>) -> Self {
        let start = offset.min(len);
        let end = limit.map_or(len, |l| start.saturating_add(l).min(len));
        Self::range(start..end)
    }

    /// These doc_ids (any order, duplicates ignored).
    pub fn from_ids(ids: impl IntoIterator<Item = usize>) -> Self {
        let mut ids: Vec<usize> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut ranges: Vec<Range<usize>> = vec![];
        for id in ids {
            match ranges.last_mut() {
                Some(r) if r.end == id => r.end = id + 1,
                _ => ranges.push(id..id + 1),
            }
        }
        Selection { ranges }
    }

    /// This selection without the doc_ids `skip` says are done (resume).
    pub fn without(&self, skip: impl Fn(usize) -> bool) -> Self {
        Self::from_ids(self.ids().filter(|&id| !skip(id)))
    }

    pub fn len(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, id: usize) -> bool {
        self.ranges.iter().any(|r| r.contains(&id))
    }

    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// The doc_ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }

    /// The part of this selection in `start..start+len`, shifted to start at 0.
    fn local(&self, start: usize, len: usize) -> Vec<Range<usize>> {
        let end = start + len;
        self.ranges
            .iter()
            .filter_map(|r| {
                let (a, b) = (r.start.max(start), r.end.min(end));
                (a < b).then(|| a - start..b - start)
            })
            .collect()
    }
}

/// The row groups that hold `local` (sorted, disjoint ranges of a shard's rows) and the row
/// selection over those groups' rows, concatenated.
fn plan_row_groups(group_rows: &[usize], local: &[Range<usize>]) -> (Vec<usize>, Vec<RowSelector>) {
    let (mut groups, mut selectors) = (vec![], vec![]);
    let mut g_start = 0;
    let mut first = 0; // the first range that may still overlap this group or a later one
    for (g, &n) in group_rows.iter().enumerate() {
        let g_end = g_start + n;
        let mut cursor = g_start;
        let mut picked = vec![];
        let mut j = first;
        while j < local.len() && local[j].start < g_end {
            let (a, b) = (local[j].start.max(g_start), local[j].end.min(g_end));
            if a < b {
                if a > cursor {
                    picked.push(RowSelector::skip(a - cursor));
                }
                picked.push(RowSelector::select(b - a));
                cursor = b;
            }
            j += 1;
        }
        while first < local.len() && local[first].end <= g_end {
            first += 1;
        }
        if !picked.is_empty() {
            if cursor < g_end {
                picked.push(RowSelector::skip(g_end - cursor));
            }
            groups.push(g);
            selectors.extend(picked);
        }
        g_start = g_end;
    }
    (groups, selectors)
}

/// The reader over one shard's selected rows.
struct Open {
    shard: usize,
    /// The global doc_ids still to come from this shard, in order.
    ids: VecDeque<Range<usize>>,
    /// None for a JSON shard (its rows are in memory).
    parquet: Option<Box<OpenParquet>>,
}

struct OpenParquet {
    reader: ParquetRecordBatchReader,
    batch: Option<(RecordBatch, Vec<ColumnKind>)>,
    pos: usize,
}

/// The selected rows in doc_id order, read a record batch at a time ([`Rows::with_doc_ids`]
/// pairs each with its doc_id). After an `Err` (an unreadable page, a shard shorter than its
/// footer says) the iterator ends.
pub struct Rows<'a> {
    ds: &'a Dataset,
    columns: Option<Vec<String>>,
    /// (shard, the shard's selected rows as local ranges).
    plan: VecDeque<(usize, Vec<Range<usize>>)>,
    open: Option<Open>,
    remaining: usize,
    failed: bool,
}

impl<'a> Rows<'a> {
    pub(crate) fn new(
        ds: &'a Dataset,
        selection: &Selection,
        columns: Option<Vec<String>>,
    ) -> Result<Self> {
        if let Some(last) = selection.ranges().last() {
            if last.end > ds.len() {
                return Err(Error::Dataset {
                    what: ds
                        .files()
                        .first()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    reason: format!(
                        "doc_id {} asked for; the split has {} rows",
                        last.end - 1,
                        ds.len()
                    ),
                });
            }
        }
        if let Some(cols) = &columns {
            ds.require_columns(cols)?;
        }
        let plan = ds
            .shards()
            .iter()
            .enumerate()
            .filter_map(|(k, s)| {
                let local = selection.local(s.start, s.rows);
                (!local.is_empty()).then_some((k, local))
            })
            .collect();
        Ok(Rows {
            ds,
            columns,
            plan,
            open: None,
            remaining: selection.len(),
            failed: false,
        })
    }

    /// Rows still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    fn open_shard(&self, k: usize, local: Vec<Range<usize>>) -> Result<Open> {
        let shard: &Shard = &self.ds.shards()[k];
        let ids: VecDeque<Range<usize>> = local
            .iter()
            .map(|r| r.start + shard.start..r.end + shard.start)
            .collect();
        let (meta, features) = match &shard.data {
            ShardData::Parquet { meta, features } => (meta, features),
            ShardData::Json { .. } => {
                return Ok(Open {
                    shard: k,
                    ids,
                    parquet: None,
                })
            }
        };
        let what = || shard.path.display().to_string();
        let file = File::open(&shard.path).map_err(|e| Error::io(what(), e))?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone());
        let fields = builder.schema().fields().clone();
        let indices: Vec<usize> = match &self.columns {
            None => (0..fields.len()).collect(),
            Some(cols) => fields
                .iter()
                .enumerate()
                .filter(|(_, f)| cols.contains(f.name()))
                .map(|(i, _)| i)
                .collect(),
        };
        for &i in &indices {
            let f = &fields[i];
            if convert::classify(f, features.get(f.name())) == ColumnKind::Field {
                if let Some(why) = convert::unsupported(f.data_type()) {
                    return Err(Error::Dataset {
                        what: what(),
                        reason: format!("column `{}`: {why}", f.name()),
                    });
                }
            }
        }
        let group_rows: Vec<usize> = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as usize)
            .collect();
        let (groups, selectors) = plan_row_groups(&group_rows, &local);
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let reader = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(self.ds.batch_size())
            .build()
            .map_err(|e| Error::Dataset {
                what: what(),
                reason: format!("cannot read its row groups: {e}"),
            })?;
        Ok(Open {
            shard: k,
            ids,
            parquet: Some(Box::new(OpenParquet {
                reader,
                batch: None,
                pos: 0,
            })),
        })
    }

    fn step(&mut self) -> Option<Result<(usize, Row)>> {
        loop {
            let Some(open) = self.open.as_mut() else {
                let (k, local) = self.plan.pop_front()?;
                match self.open_shard(k, local) {
                    Ok(o) => self.open = Some(o),
                    Err(e) => return Some(Err(e)),
                }
                continue;
            };
            let ds = self.ds;
            let path = || ds.shards()[open.shard].path.display().to_string();
            let Some(parquet) = open.parquet.as_mut() else {
                match pop_id(&mut open.ids) {
                    Some(id) => {
                        self.remaining = self.remaining.saturating_sub(1);
                        let shard = &ds.shards()[open.shard];
                        return Some(json_row(shard, id, self.columns.as_deref()));
                    }
                    None => {
                        self.open = None;
                        continue;
                    }
                }
            };
            if let Some((batch, kinds)) = &parquet.batch {
                if parquet.pos < batch.num_rows() {
                    let i = parquet.pos;
                    parquet.pos += 1;
                    let Some(id) = pop_id(&mut open.ids) else {
                        return Some(Err(Error::Dataset {
                            what: path(),
                            reason: "the reader returned more rows than were selected".into(),
                        }));
                    };
                    self.remaining = self.remaining.saturating_sub(1);
                    return Some(
                        convert::row_at(batch, kinds, i)
                            .map(|row| (id, row))
                            .map_err(|e| Error::Dataset {
                                what: path(),
                                reason: format!("doc_id {id}: {e}"),
                            }),
                    );
                }
            }
            // parquet 60 asserts on some corrupt pages (arrow-buffer's
            // `read_up_to_byte_from_offset` on garbled definition levels, found by flipping bytes
            // of the fixtures): a bad download must be an error naming the file, not a crash of
            // the whole run. The reader is dropped after it (the iterator ends on an error).
            let next =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parquet.reader.next()))
                    .unwrap_or_else(|panic| {
                        let msg = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Some(Err(arrow_schema::ArrowError::ParquetError(format!(
                            "the parquet reader gave up on a corrupt page: {msg}"
                        ))))
                    });
            match next {
                Some(Ok(batch)) => {
                    let features = match &ds.shards()[open.shard].data {
                        ShardData::Parquet { features, .. } => Some(features),
                        ShardData::Json { .. } => None,
                    };
                    let kinds = batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| convert::classify(f, features.and_then(|m| m.get(f.name()))))
                        .collect();
                    parquet.batch = Some((batch, kinds));
                    parquet.pos = 0;
                }
                Some(Err(e)) => {
                    return Some(Err(Error::Dataset {
                        what: path(),
                        reason: format!(
                            "reading rows failed ({e}); the file may be corrupt: delete it and \
                             download the dataset again"
                        ),
                    }))
                }
                None => {
                    if let Some(id) = pop_id(&mut open.ids) {
                        return Some(Err(Error::Dataset {
                            what: path(),
                            reason: format!("the file ended before doc_id {id} although its footer lists more rows"),
                        }));
                    }
                    self.open = None;
                }
            }
        }
    }
}

/// Row `id` of a JSON shard, only `columns` (all when None).
fn json_row(shard: &Shard, id: usize, columns: Option<&[String]>) -> Result<(usize, Row)> {
    let what = || shard.path.display().to_string();
    let ShardData::Json { rows, .. } = &shard.data else {
        return Err(Error::Dataset {
            what: what(),
            reason: "not a JSON shard".into(),
        });
    };
    let all = rows
        .get(id.wrapping_sub(shard.start))
        .ok_or_else(|| Error::Dataset {
            what: what(),
            reason: format!("doc_id {id} is not in this file"),
        })?;
    let fields = match columns {
        None => all.clone(),
        Some(cols) => all
            .iter()
            .filter(|(k, _)| cols.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    Ok((
        id,
        Row {
            fields,
            ..Row::default()
        },
    ))
}

fn pop_id(ids: &mut VecDeque<Range<usize>>) -> Option<usize> {
    loop {
        let r = ids.front_mut()?;
        if let Some(id) = r.next() {
            return Some(id);
        }
        ids.pop_front();
    }
}

impl<'a> Rows<'a> {
    fn next_with_id(&mut self) -> Option<Result<(usize, Row)>> {
        if self.failed {
            return None;
        }
        let item = self.step();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
            self.open = None;
            self.plan.clear();
        }
        item
    }

    /// The same rows as `(doc_id, row)`.
    pub fn with_doc_ids(self) -> WithDocIds<'a> {
        WithDocIds(self)
    }
}

/// [`Rows`] paired with their doc_ids.
pub struct WithDocIds<'a>(Rows<'a>);

impl Iterator for WithDocIds<'_> {
    type Item = Result<(usize, Row)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_with_id()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl Iterator for Rows<'_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_id().map(|r| r.map(|(_, row)| row))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            (0, Some(0))
        } else {
            (0, Some(self.remaining))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections() {
        assert_eq!(Selection::window(10, 3, Some(4)), Selection::range(3..7));
        assert_eq!(Selection::window(10, 8, Some(4)), Selection::range(8..10));
        assert!(Selection::window(10, 12, None).is_empty());
        assert_eq!(Selection::window(10, 0, None).len(), 10);
        let s = Selection::window(10, 0, None).without(|i| [0, 1, 5, 9].contains(&i));
        assert_eq!(s.ranges(), &[2..5, 6..9]);
        assert_eq!(s.len(), 6);
        assert_eq!(
            Selection::from_ids([5, 3, 4, 4, 9]).ranges(),
            &[3..6, 9..10]
        );
        assert_eq!(s.local(4, 4), vec![0..1, 2..4]);
    }

    fn rows_of(sel: &[RowSelector]) -> Vec<(bool, usize)> {
        sel.iter().map(|s| (s.skip, s.row_count)).collect()
    }

    #[test]
    fn row_groups_are_planned() {
        // Groups of 2, 2, 2, 1 rows; rows 1..2 and 4..7.
        let (g, s) = plan_row_groups(&[2, 2, 2, 1], &[1..2, 4..7]);
        assert_eq!(g, vec![0, 2, 3]);
        assert_eq!(
            rows_of(&s),
            vec![(true, 1), (false, 1), (false, 2), (false, 1)]
        );
        // A range across groups 0 and 1, nothing from 2.
        let (g, s) = plan_row_groups(&[3, 3, 3], std::slice::from_ref(&(2..4)));
        assert_eq!(g, vec![0, 1]);
        assert_eq!(
            rows_of(&s),
            vec![(true, 2), (false, 1), (false, 1), (true, 2)]
        );
        let (g, _) = plan_row_groups(&[3, 0, 3], std::slice::from_ref(&(0..6)));
        assert_eq!(g, vec![0, 2]);
    }
}
