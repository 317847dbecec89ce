//! Rows of integers inserted [`ROWS`] at a time: one `INSERT ... VALUES (..), (..), ...` statement per batch
//! instead of one per row (SQLite's cost per statement run, not per row, was most of a row's), the last
//! rows with a one-row statement.

use rusqlite::{Connection, Result, Statement};

/// Rows per statement.
pub(super) const ROWS: usize = 64;

/// An insert into one table, its rows batched.
pub(super) struct Batch<'c> {
    many: Statement<'c>,
    one: Statement<'c>,
    cols: usize,
    /// The values of the rows not yet inserted, row after row (fewer than [`ROWS`] rows).
    vals: Vec<i64>,
}

impl<'c> Batch<'c> {
    /// `insert` is the statement up to `VALUES` (`INSERT INTO T`); `row` one row's values in parentheses,
    /// each `?` a value pushed (the others literals), e.g. `(?, ?, 0, ?)`.
    pub(super) fn new(conn: &'c Connection, insert: &str, row: &str) -> Result<Batch<'c>> {
        let cols = row.matches('?').count();
        let rows = vec![row; ROWS].join(", ");
        Ok(Batch {
            many: conn.prepare(&format!("{insert} VALUES {rows}"))?,
            one: conn.prepare(&format!("{insert} VALUES {row}"))?,
            cols,
            vals: Vec::with_capacity(cols * ROWS),
        })
    }

    /// One row (`row.len()` is the number of `?` of the row).
    pub(super) fn push(&mut self, row: &[i64]) -> Result<()> {
        debug_assert_eq!(row.len(), self.cols);
        self.vals.extend_from_slice(row);
        if self.vals.len() == self.cols * ROWS {
            run(&mut self.many, &self.vals)?;
            self.vals.clear();
        }
        Ok(())
    }

    /// Inserts the rows pushed since the last full batch.
    pub(super) fn finish(mut self) -> Result<()> {
        if self.cols == 0 {
            return Ok(());
        }
        for r in self.vals.chunks_exact(self.cols) {
            run(&mut self.one, r)?;
        }
        Ok(())
    }
}

fn run(st: &mut Statement<'_>, vals: &[i64]) -> Result<()> {
    for (i, v) in vals.iter().enumerate() {
        st.raw_bind_parameter(i + 1, *v)?;
    }
    st.raw_execute()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full batches, the rows left over, literals of the row and the order of the rows all come out as pushed.
    #[test]
    fn every_row_pushed_is_inserted_once_in_order() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER, k INTEGER, b INTEGER)")
            .unwrap();
        for n in [0, 1, ROWS - 1, ROWS, 2 * ROWS + 5] {
            c.execute_batch("DELETE FROM t").unwrap();
            let mut b = Batch::new(&c, "INSERT INTO t", "(?, 7, ?)").unwrap();
            for i in 0..n as i64 {
                b.push(&[i, -i]).unwrap();
            }
            b.finish().unwrap();
            let mut st = c.prepare("SELECT a, k, b FROM t ORDER BY rowid").unwrap();
            let got: Vec<(i64, i64, i64)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let want: Vec<(i64, i64, i64)> = (0..n as i64).map(|i| (i, 7, -i)).collect();
            assert_eq!(got, want, "{n} rows");
        }
    }
}
