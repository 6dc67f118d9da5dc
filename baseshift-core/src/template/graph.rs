//! DAG checks on resolved parent lists (iterative: a 10,000-job chain must not overflow).

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

/// A cycle, as job indices in run order, the first index repeated at the end; `None`
/// when the graph is acyclic. `parents[i]` are the indices of job `i`'s parents.
pub(super) fn find_cycle(parents: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(parents.len(), parents.len());
    for _ in parents {
        g.add_node(());
    }
    for (child, ps) in parents.iter().enumerate() {
        for &p in ps {
            g.add_edge(NodeIndex::new(p), NodeIndex::new(child), ());
        }
    }
    if toposort(&g, None).is_ok() {
        return None;
    }
    // The strongly connected component holding the earliest-listed job on a cycle.
    let scc = kosaraju_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1 || c.iter().any(|n| g.contains_edge(*n, *n)))
        .min_by_key(|c| c.iter().map(|n| n.index()).min().unwrap_or(usize::MAX))?;
    let members: HashSet<usize> = scc.iter().map(|n| n.index()).collect();
    let start = members.iter().copied().min()?;
    // Every member of a non-trivial component has a successor inside it, so this walk
    // always reaches a node it has seen: the cycle starts there.
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut node = start;
    loop {
        if let Some(&at) = seen.get(&node) {
            let mut cycle = path.split_off(at);
            cycle.push(node);
            return Some(cycle);
        }
        seen.insert(node, path.len());
        path.push(node);
        node = g.neighbors(NodeIndex::new(node)).map(|n| n.index()).filter(|n| members.contains(n)).min()?;
    }
}

/// Whether every job of `wanted` is reachable from `from` through parents (`from` itself
/// included when `include_self`); returns the ones that are not.
pub(super) fn missing_ancestors(
    parents: &[Vec<usize>],
    from: usize,
    include_self: bool,
    wanted: &[usize],
) -> Vec<usize> {
    let mut missing: HashSet<usize> = wanted.iter().copied().collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let mut visited = HashSet::new();
    let mut stack: Vec<usize> = if include_self { vec![from] } else { parents[from].clone() };
    while let Some(n) = stack.pop() {
        if !visited.insert(n) {
            continue;
        }
        missing.remove(&n);
        if missing.is_empty() {
            return Vec::new();
        }
        stack.extend(parents[n].iter().copied().filter(|p| !visited.contains(p)));
    }
    let mut out: Vec<usize> = missing.into_iter().collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acyclic_graphs_have_no_cycle() {
        assert_eq!(find_cycle(&[vec![], vec![0], vec![0], vec![1, 2]]), None);
    }

    #[test]
    fn finds_the_cycle_path() {
        // 0 -> 1 -> 2 -> 3 -> 1, and 4 hangs off 3.
        let parents = vec![vec![], vec![0, 3], vec![1], vec![2], vec![3]];
        assert_eq!(find_cycle(&parents), Some(vec![1, 2, 3, 1]));
    }

    #[test]
    fn ancestors_are_found_transitively() {
        let parents = vec![vec![], vec![0], vec![1], vec![]];
        assert!(missing_ancestors(&parents, 2, false, &[0, 1]).is_empty());
        assert_eq!(missing_ancestors(&parents, 2, false, &[2, 3]), vec![2, 3]);
        assert!(missing_ancestors(&parents, 2, true, &[2]).is_empty());
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let n = 20_000;
        let mut parents: Vec<Vec<usize>> = (0..n).map(|i| if i == 0 { vec![] } else { vec![i - 1] }).collect();
        assert_eq!(find_cycle(&parents), None);
        assert!(missing_ancestors(&parents, n - 1, false, &[0]).is_empty());
        parents[0] = vec![n - 1];
        assert_eq!(find_cycle(&parents).map(|c| c.len()), Some(n + 1));
    }
}
