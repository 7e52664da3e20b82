/// Decreasing-size best fit over live intervals, as XLA's `GlobalDecreasingSizeBestFitHeap`:
/// buffers by size (then lifetime length) descending, each into the smallest free gap among the
/// buffers live with it that holds it, or on top of them when no gap does.
enum BestFit {
    /// Offsets per active buffer.
    static func offsets(_ t: Timeline) -> [Int] {
        GreedyPlacement.place(t, order: GreedyPlacement.largestFirst(t), choice: .tightest)
    }
}
