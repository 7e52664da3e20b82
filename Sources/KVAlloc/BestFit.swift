/// Decreasing-size best fit over live intervals, as XLA's `GlobalDecreasingSizeBestFitHeap`:
/// buffers by size (then lifetime length) descending, each into the smallest free gap among the
/// buffers live with it that holds it, or on top of them when no gap does.
enum BestFit {
    /// Offsets per active buffer.
    static func offsets(_ t: Timeline) -> [Int] {
        let order = (0..<t.count).sorted {
            let a = (t.size[$0], t.upper[$0] - t.lower[$0]), b = (t.size[$1], t.upper[$1] - t.lower[$1])
            return a != b ? a > b : $0 < $1
        }
        return GreedyPlacement.place(t, order: order, choice: .tightest)
    }
}
