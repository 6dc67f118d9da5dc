//! The job graph in flat lists, and its checks (iterative: a 10,000-job chain must not
//! overflow).

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

/// Parents and children of every job, each kind in one flat list (no list per job).
#[derive(Debug)]
pub(super) struct Dag {
    /// `parents[parent_at[i]..parent_at[i + 1]]` are job `i`'s parents, in listed order.
    parent_at: Vec<usize>,
    parents: Vec<usize>,
    /// Like `parent_at` for `children` (empty until [`Dag::link_children`]).
    child_at: Vec<usize>,
    children: Vec<usize>,
    /// Whether every job's parents are listed before it: then there is no cycle.
    forward: bool,
}

impl Dag {
    /// A graph of no jobs yet, with room for `jobs` jobs and `edges` parent links.
    pub fn with_capacity(jobs: usize, edges: usize) -> Self {
        let mut parent_at = Vec::with_capacity(jobs + 1);
        parent_at.push(0);
        Dag { parent_at, parents: Vec::with_capacity(edges), child_at: Vec::new(), children: Vec::new(), forward: true }
    }

    /// The graph of `lists[i]` parents for job `i`.
    #[cfg(test)]
    pub fn from_lists(lists: &[Vec<usize>]) -> Self {
        let mut dag = Dag::with_capacity(lists.len(), lists.iter().map(Vec::len).sum());
        for ps in lists {
            for &p in ps {
                dag.add_parent(p);
            }
            dag.end_job();
        }
        dag
    }

    /// Adds parent `p` to the job being added.
    pub fn add_parent(&mut self, p: usize) {
        if p + 1 >= self.parent_at.len() {
            self.forward = false;
        }
        self.parents.push(p);
    }

    /// Ends the job being added: the next parents are the next job's.
    pub fn end_job(&mut self) {
        self.parent_at.push(self.parents.len());
    }

    /// The number of jobs added.
    pub fn len(&self) -> usize {
        self.parent_at.len() - 1
    }

    /// Job `i`'s parents, in listed order.
    pub fn parents(&self, i: usize) -> &[usize] {
        &self.parents[self.parent_at[i]..self.parent_at[i + 1]]
    }

    /// Fills the child lists from the parent lists (each in job order).
    pub fn link_children(&mut self) {
        let n = self.len();
        // Count per parent, then turn the counts into start offsets...
        let mut child_at = vec![0; n + 1];
        for &p in &self.parents {
            child_at[p + 1] += 1;
        }
        for i in 0..n {
            child_at[i + 1] += child_at[i];
        }
        // ...and place each child at its parent's next free slot, children in job order.
        let mut next = child_at[..n].to_vec();
        let mut children = vec![0; self.parents.len()];
        for child in 0..n {
            for &p in self.parents(child) {
                children[next[p]] = child;
                next[p] += 1;
            }
        }
        self.child_at = child_at;
        self.children = children;
    }

    /// Job `i`'s children, in job order (after [`Dag::link_children`]).
    pub fn children(&self, i: usize) -> &[usize] {
        &self.children[self.child_at[i]..self.child_at[i + 1]]
    }
}

/// A cycle, as job indices in run order, the first index repeated at the end; `None`
/// when the graph is acyclic.
pub(super) fn find_cycle(dag: &Dag) -> Option<Vec<usize>> {
    if dag.forward {
        return None;
    }
    let n = dag.len();
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(n, dag.parents.len());
    for _ in 0..n {
        g.add_node(());
    }
    for child in 0..n {
        for &p in dag.parents(child) {
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
pub(super) fn missing_ancestors(dag: &Dag, from: usize, include_self: bool, wanted: &[usize]) -> Vec<usize> {
    let mut missing: HashSet<usize> = wanted.iter().copied().collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let mut visited = HashSet::new();
    let mut stack: Vec<usize> = if include_self { vec![from] } else { dag.parents(from).to_vec() };
    while let Some(n) = stack.pop() {
        if !visited.insert(n) {
            continue;
        }
        missing.remove(&n);
        if missing.is_empty() {
            return Vec::new();
        }
        stack.extend(dag.parents(n).iter().copied().filter(|p| !visited.contains(p)));
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
        assert_eq!(find_cycle(&Dag::from_lists(&[vec![], vec![0], vec![0], vec![1, 2]])), None);
        // Parents listed after their child: checked through the graph, still acyclic.
        assert_eq!(find_cycle(&Dag::from_lists(&[vec![2], vec![], vec![1]])), None);
    }

    #[test]
    fn finds_the_cycle_path() {
        // 0 -> 1 -> 2 -> 3 -> 1, and 4 hangs off 3.
        let parents = vec![vec![], vec![0, 3], vec![1], vec![2], vec![3]];
        assert_eq!(find_cycle(&Dag::from_lists(&parents)), Some(vec![1, 2, 3, 1]));
    }

    #[test]
    fn ancestors_are_found_transitively() {
        let parents = Dag::from_lists(&[vec![], vec![0], vec![1], vec![]]);
        assert!(missing_ancestors(&parents, 2, false, &[0, 1]).is_empty());
        assert_eq!(missing_ancestors(&parents, 2, false, &[2, 3]), vec![2, 3]);
        assert!(missing_ancestors(&parents, 2, true, &[2]).is_empty());
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let n = 20_000;
        let mut parents: Vec<Vec<usize>> = (0..n).map(|i| if i == 0 { vec![] } else { vec![i - 1] }).collect();
        assert_eq!(find_cycle(&Dag::from_lists(&parents)), None);
        assert!(missing_ancestors(&Dag::from_lists(&parents), n - 1, false, &[0]).is_empty());
        parents[0] = vec![n - 1];
        assert_eq!(find_cycle(&Dag::from_lists(&parents)).map(|c| c.len()), Some(n + 1));
    }

    #[test]
    fn children_are_listed_in_job_order() {
        let mut dag = Dag::from_lists(&[vec![], vec![0], vec![3, 0], vec![0], vec![2, 1]]);
        dag.link_children();
        let children: Vec<&[usize]> = (0..dag.len()).map(|i| dag.children(i)).collect();
        assert_eq!(children, [&[1, 2, 3][..], &[4], &[4], &[2], &[]]);
        assert_eq!(dag.parents(2), [3, 0]);
        assert_eq!(dag.parents(0), [] as [usize; 0]);
    }
}
