/// Greedy by conflicts (TVM USMP `greedy_by_conflicts`): buffers that overlap the most others in
/// time first, larger size breaking ties, each at the lowest offset where it fits.
enum GreedyByConflicts {
    /// Offsets per active buffer.
    static func offsets(_ t: Timeline) -> [Int] {
        let conflicts = (0..<t.count).map { t.overlapStart[$0 + 1] - t.overlapStart[$0] }
        let order = (0..<t.count).sorted {
            let a = (conflicts[$0], t.size[$0]), b = (conflicts[$1], t.size[$1])
            return a != b ? a > b : $0 < $1
        }
        return GreedyPlacement.place(t, order: order, choice: .lowest)
    }
}
