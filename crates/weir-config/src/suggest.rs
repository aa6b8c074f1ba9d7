//! "Did you mean ...?": the closest known name to a misspelt one.

/// The candidate closest to `word` (case-insensitive), if it is within edit distance 2 and
/// closer than the word's own length (so "x" does not suggest "ip").
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    let shared_prefix = |c: &str| {
        word.chars()
            .zip(c.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    candidates
        .iter()
        .map(|c| {
            let lower = c.to_ascii_lowercase();
            (edit_distance(&word, &lower), shared_prefix(&lower), *c)
        })
        .filter(|(d, _, _)| *d <= 2 && *d < word.chars().count())
        // Closest first; on a tie, the one sharing the longest start ("wr" is "wrr", not "rr").
        .min_by_key(|(d, prefix, _)| (*d, std::cmp::Reverse(*prefix)))
        .map(|(_, _, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters each cost 1.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]; three rows are enough.
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = vec![0; width];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..width {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[width - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("idle_timout", "idle_timeout"), 1);
        assert_eq!(edit_distance("wieght", "weight"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_close_candidates() {
        let keys = ["name", "bind", "idle_timeout", "backlog"];
        assert_eq!(suggest("idle_timout", &keys), Some("idle_timeout"));
        assert_eq!(suggest("Bind", &keys), Some("bind"));
        assert_eq!(suggest("address", &keys), None);
        assert_eq!(suggest("x", &keys), None);
        assert_eq!(suggest("wr", &["rr", "wrr"]), Some("wrr"));
    }
}
