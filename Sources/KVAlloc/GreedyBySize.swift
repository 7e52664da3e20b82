/// Greedy by size (TFLite's arena planner, TVM USMP `greedy_by_size`): largest buffers first,
/// longer lifetimes breaking ties, each at the lowest offset where it fits. Fast, and on tight
/// instances typically 10–45% above LOAD; kvplan uses it as a baseline and as a first packing.
enum GreedyBySize {
    /// Offsets per active buffer.
    static func offsets(_ t: Timeline) -> [Int] {
        GreedyPlacement.place(t, order: GreedyPlacement.largestFirst(t), choice: .lowest)
    }
}
