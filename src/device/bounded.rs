//! A list of device records bounded by `NPUPROF_MAX_DEVICE_RECORDS`: it grows only by fallible
//! reservations, so neither a huge source nor a failed allocation can abort the process (an allocation
//! failure aborts; it is not a panic); a record beyond the limit, or one no memory could be found for, is
//! counted in `cut`. The kernels, collectives and memory operations of a profile are each one.

#[derive(Debug)]
pub struct Bounded<T> {
    pub list: Vec<T>,
    limit: usize,
    /// Records left out: beyond `limit`, or when memory for them could not be reserved.
    pub cut: u64,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded::with_limit(crate::config::DEFAULT_MAX_DEVICE_RECORDS as usize)
    }
}

impl<T> Bounded<T> {
    /// No records yet; at most `limit` will be kept.
    pub fn with_limit(limit: usize) -> Self {
        Bounded {
            list: Vec::new(),
            limit,
            cut: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether one more record can be kept: below the limit, with memory reserved for it (the list grows
    /// by at least 1024, fallibly). `false` counts the record in `cut`.
    pub fn room(&mut self) -> bool {
        room(&mut self.list, self.limit, &mut self.cut)
    }

    /// Adds `x` if there is room; else counts it in `cut`.
    pub fn add(&mut self, x: T) -> bool {
        let ok = self.room();
        if ok {
            self.list.push(x);
        }
        ok
    }
}

/// Whether `list` can take one more record: below `limit`, with memory reserved for it (it grows by at
/// least 1024, fallibly). `false` counts the record in `cut`. [`Bounded`]'s rule, also for lists that keep
/// more than the records (the kernels with their strings).
pub(super) fn room<T>(list: &mut Vec<T>, limit: usize, cut: &mut u64) -> bool {
    let n = list.len();
    let ok = n < limit
        && (n < list.capacity() || list.try_reserve_exact(n.max(1024).min(limit - n)).is_ok());
    if !ok {
        *cut += 1;
    }
    ok
}

/// Appends `x` to `v` unless no memory can be reserved for it (the list grows by at least 1024, fallibly):
/// `false` when `x` was left out. For lists bounded elsewhere (by a limit of their own, or a known count).
pub fn push_fallible<T>(v: &mut Vec<T>, x: T) -> bool {
    if v.len() == v.capacity() && v.try_reserve(v.len().max(1024)).is_err() {
        return false;
    }
    v.push(x);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_beyond_the_limit_are_counted_not_kept() {
        let mut b = Bounded::with_limit(3);
        for i in 0..5u64 {
            b.add(i);
        }
        assert_eq!((b.len(), b.cut, &b.list[..]), (3, 2, &[0, 1, 2][..]));
        assert!(b.list.capacity() <= 3);
    }
}
