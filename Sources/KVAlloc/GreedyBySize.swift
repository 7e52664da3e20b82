/// Greedy by size (TFLite's arena planner, TVM USMP `greedy_by_size`): largest buffers first,
/// longer lifetimes breaking ties, each at the lowest offset where it fits. Fast, and on tight
/// instances typically 10–45% above LOAD; kvplan uses it as a baseline and as a first packing.
enum GreedyBySize {
    /// Offsets per active buffer.
    static func offsets(_ t: Timeline) -> [Int] {
        let order = (0..<t.count).sorted {
            let a = (t.size[$0], t.upper[$0] - t.lower[$0]), b = (t.size[$1], t.upper[$1] - t.lower[$1])
            return a != b ? a > b : $0 < $1
        }
        return GreedyPlacement.place(t, order: order, choice: .lowest)
    }
}
