//! Keeping an answer within what a connection can take: a list is cut to its
//! newest items whose encoded size fits the budget
//! (`SessionConfig::answer_budget_bytes`), so a long history or
//! notification list never overflows the socket's write ceiling (the socket
//! would be dropped); the caller says `has_more`.

/// Keeps the newest items of `items` (oldest first) whose `size` together
/// fits in `budget`, at least one; true when older ones were dropped.
pub fn keep_newest_within<T>(
    items: &mut Vec<T>,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> bool {
    let mut used = 0_usize;
    let mut first_kept = items.len();
    for (index, item) in items.iter().enumerate().rev() {
        let item_size = size(item);
        if first_kept < items.len() && used.saturating_add(item_size) > budget {
            break;
        }
        used = used.saturating_add(item_size);
        first_kept = index;
    }
    items.drain(..first_kept);
    first_kept > 0
}

#[cfg(test)]
mod tests {
    use super::keep_newest_within;

    #[test]
    fn the_newest_items_within_the_budget_are_kept() {
        let mut items: Vec<u32> = (1..=10).collect();
        assert!(keep_newest_within(&mut items, 35, |_| 10));
        assert_eq!(items, [8, 9, 10]);
    }

    #[test]
    fn a_list_within_the_budget_is_untouched_and_one_item_always_stays() {
        let mut small: Vec<u32> = (1..=3).collect();
        assert!(!keep_newest_within(&mut small, 1 << 20, |_| 10));
        assert_eq!(small, [1, 2, 3]);
        let mut huge = vec![1_u32, 2];
        assert!(keep_newest_within(&mut huge, 10, |_| 5000));
        assert_eq!(huge, [2]);
        let mut empty: Vec<u32> = Vec::new();
        assert!(!keep_newest_within(&mut empty, 10, |_| 1));
    }
}
