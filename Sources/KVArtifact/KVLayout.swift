/// One layer's KV cache layout: what is kept, at which bits, and its exact bytes.
///
/// Tokens in cache order of importance: `sinkTokens` + `windowTokens` at fp16, then `highTokens`
/// at `keyBitsHigh`/`valueBitsHigh`, then `lowTokens` at `lowBits` (0 = evicted, no bytes).
/// Byte formulas: Docs/kv-layout.md (KVQuant.KVSegmentLayout).
public struct KVLayerLayout: Codable, Sendable, Equatable {
    public var layer: Int
    public var sinkTokens: Int
    public var windowTokens: Int
    public var highTokens: Int
    public var keyBitsHigh: Int
    public var valueBitsHigh: Int
    /// Tokens beyond the high segment (kept at `lowBits`, or evicted when `lowBits` is 0).
    public var lowTokens: Int
    public var lowBits: Int
    /// Exact bytes of the layer's cache (all segments, keys and values, times the batch).
    public var bytes: Int
    /// Predicted fidelity of the layer under the profile (Docs/kv-budgets.md).
    public var fidelity: Double

    public init(layer: Int, sinkTokens: Int, windowTokens: Int, highTokens: Int, keyBitsHigh: Int, valueBitsHigh: Int,
                lowTokens: Int, lowBits: Int, bytes: Int, fidelity: Double) {
        self.layer = layer
        self.sinkTokens = sinkTokens
        self.windowTokens = windowTokens
        self.highTokens = highTokens
        self.keyBitsHigh = keyBitsHigh
        self.valueBitsHigh = valueBitsHigh
        self.lowTokens = lowTokens
        self.lowBits = lowBits
        self.bytes = bytes
        self.fidelity = fidelity
    }
}
