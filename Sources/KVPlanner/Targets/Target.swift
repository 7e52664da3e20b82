import KVGraph

/// A memory tier of a target: on-chip scratchpad, HBM/DRAM, host memory.
public struct MemoryTier: Sendable, Equatable, Codable {
    /// Name used by links and plans (`scratchpad`, `hbm`, `host`).
    public var name: String
    /// Bytes it holds.
    public var capacity: Int
    /// Bytes per second it reads or writes.
    public var bandwidth: Double
    /// Byte alignment of every buffer in it (a power of two).
    public var alignment: Int
    /// Seconds from request to first byte.
    public var latency: Double
}

/// A one-way data path between two tiers.
public struct MemoryLink: Sendable, Equatable, Codable {
    /// Source tier name.
    public var from: String
    /// Destination tier name.
    public var to: String
    /// Bytes per second.
    public var bandwidth: Double
    /// Seconds per transfer, before the first byte.
    public var latency: Double
}

/// A hardware target: tiers from fastest to slowest, links, and compute throughput.
public struct Target: Sendable, Equatable, Codable {
    /// Target name.
    public var name: String
    /// Tiers in declaration order, fastest (on-chip) first.
    public var tiers: [MemoryTier]
    /// Directed links (a `<->` line yields two).
    public var links: [MemoryLink]
    /// Operations per second by dtype.
    public var compute: [DType: Double]

    /// The tier called `name`.
    public func tier(_ name: String) -> MemoryTier? { tiers.first { $0.name == name } }

    /// The link from `a` to `b`, if the target has one.
    public func link(from a: String, to b: String) -> MemoryLink? { links.first { $0.from == a && $0.to == b } }

    /// Operations per second for `dtype`, falling back to the closest wider type listed (block
    /// formats to f32: their codes are dequantised and multiplied in f32).
    public func throughput(for dtype: DType) -> Double? {
        if let t = compute[dtype] { return t }
        let fallbacks: [DType: [DType]] = [.bf16: [.f16, .f32], .f16: [.bf16, .f32], .i4: [.i8, .f16, .f32],
                                           .i2: [.i4, .i8, .f16, .f32], .i8: [.f16, .f32], .i32: [.f32], .f32: [],
                                           .q8_0: [.f32], .q4_0: [.f32]]
        return fallbacks[dtype]?.lazy.compactMap { compute[$0] }.first
    }
}
