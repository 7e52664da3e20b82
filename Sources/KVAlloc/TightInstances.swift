/// Generated problems with a known perfect packing: a capacity × time rectangle cut into buffers
/// that tile it exactly, so LOAD equals the capacity at every step and a packing of height LOAD
/// exists. These are the hardest instances for greedy allocators and the benchmark suite of
/// `kvplan bench allocate`.
///
/// Two families: *guillotine* (cut the largest piece in two, across time or across bytes, until
/// there are enough) and *churn* (simulate an allocator whose frees leave holes that are merged
/// with neighbouring holes and refilled by new buffers of random sizes — tilings no sequence of
/// straight cuts produces). Both are shuffled. Deterministic for a given seed.

/// A seedable SplitMix64 generator, so instances are the same on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator starting from `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Generators of tight instances; see the file comment.
public enum TightInstances {
    /// The families.
    public enum Family: String, CaseIterable, Sendable {
        case guillotine, churn
    }

    /// A tight instance of `family` with `count` buffers tiling `capacity` bytes × `horizon` steps.
    public static func make(_ family: Family, count: Int, capacity: Int = 1 << 20, horizon: Int = 1000, seed: UInt64) -> Problem {
        switch family {
        case .guillotine: guillotine(count: count, capacity: capacity, horizon: horizon, seed: seed)
        case .churn: churn(count: count, capacity: capacity, horizon: horizon, seed: seed)
        }
    }

    /// Cuts the largest piece (by area) in two until there are `count` pieces.
    public static func guillotine(count: Int, capacity: Int, horizon: Int, seed: UInt64) -> Problem {
        var rng = SplitMix64(seed: seed)
        struct Piece { var lower, upper, offset, size: Int }
        var pieces = [Piece(lower: 0, upper: horizon, offset: 0, size: capacity)]
        while pieces.count < count {
            // The largest piece that can still be cut.
            guard let index = pieces.indices.filter({ pieces[$0].upper - pieces[$0].lower > 1 || pieces[$0].size > 1 })
                .max(by: { area(pieces[$0]) < area(pieces[$1]) }) else { break }
            let p = pieces[index]
            let width = p.upper - p.lower
            // Cut across time or across bytes, favouring the relatively longer side.
            let timeShare = Double(width) / Double(horizon), byteShare = Double(p.size) / Double(capacity)
            let cutTime = p.size == 1 || (width > 1 && Double.random(in: 0..<(timeShare + byteShare), using: &rng) < timeShare)
            if cutTime {
                let at = p.lower + Int.random(in: 1..<width, using: &rng)
                pieces[index].upper = at
                pieces.append(Piece(lower: at, upper: p.upper, offset: p.offset, size: p.size))
            } else {
                let at = Int.random(in: 1..<p.size, using: &rng)
                pieces[index].size = at
                pieces.append(Piece(lower: p.lower, upper: p.upper, offset: p.offset + at, size: p.size - at))
            }
        }
        pieces.shuffle(using: &rng)
        return Problem(buffers: pieces.enumerated().map { i, p in
            Buffer(id: "b\(i)", lower: p.lower, upper: p.upper, size: p.size)
        }, capacity: capacity)

        func area(_ p: Piece) -> Double { Double(p.upper - p.lower) * Double(p.size) }
    }

    /// Simulates an allocator that keeps the space full: at each step one to three buffers end,
    /// their holes merge with adjacent holes, and each hole is refilled by one to three new
    /// buffers, steering the number live toward `live` (default: about √count + 4).
    public static func churn(count: Int, capacity: Int, horizon: Int, seed: UInt64, live target: Int? = nil) -> Problem {
        var rng = SplitMix64(seed: seed)
        struct Live { var lower, offset, size: Int }
        var live: [Live] = []
        var made: [(lower: Int, upper: Int, size: Int)] = []
        let target = max(2, min(count, target ?? (Int(Double(count).squareRoot()) + 4)))
        func fill(_ start: Int, _ length: Int, at step: Int, pieces: Int) {
            var cuts = Set<Int>()
            while cuts.count < min(pieces, length) - 1 { cuts.insert(Int.random(in: 1..<length, using: &rng)) }
            var previous = 0
            for c in cuts.sorted() + [length] {
                live.append(Live(lower: step, offset: start + previous, size: c - previous))
                previous = c
            }
        }
        fill(0, capacity, at: 0, pieces: min(target, count))
        // About two new buffers per step; the steps are spread over the horizon.
        let steps = max(2, (count - target) / 2 + 1)
        let stride = max(1, horizon / (steps + 1))
        var step = 0
        while made.count + live.count < count {
            step += 1
            let time = step * stride
            let ending = min(live.count, Int.random(in: 1...3, using: &rng))
            var freed: [(start: Int, end: Int)] = []
            for _ in 0..<ending {
                let b = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
                made.append((b.lower, time, b.size))
                freed.append((b.offset, b.offset + b.size))
            }
            freed.sort { $0.start < $1.start }
            var holes: [(start: Int, end: Int)] = []
            for f in freed {
                if let last = holes.last, last.end == f.start { holes[holes.count - 1].end = f.end } else { holes.append(f) }
            }
            for h in holes {
                let room = count - made.count - live.count
                let wanted = live.count < target ? Int.random(in: 2...3, using: &rng)
                    : live.count > target ? 1 : Int.random(in: 1...2, using: &rng)
                fill(h.start, h.end - h.start, at: time, pieces: max(1, min(room, wanted)))
            }
        }
        let end = (step + 1) * stride
        for b in live { made.append((b.lower, end, b.size)) }
        made.shuffle(using: &rng)
        return Problem(buffers: made.enumerated().map { i, m in
            Buffer(id: "b\(i)", lower: m.lower, upper: m.upper, size: m.size)
        }, capacity: capacity)
    }

    /// A random instance (not tight): `count` buffers with lifetimes in `[0, horizon)` and sizes in `sizes`.
    public static func random(count: Int, horizon: Int, sizes: ClosedRange<Int>, seed: UInt64) -> Problem {
        var rng = SplitMix64(seed: seed)
        let buffers = (0..<count).map { i in
            let lower = Int.random(in: 0..<(horizon - 1), using: &rng)
            let upper = Int.random(in: (lower + 1)...horizon, using: &rng)
            return Buffer(id: "b\(i)", lower: lower, upper: upper, size: Int.random(in: sizes, using: &rng))
        }
        return Problem(buffers: buffers)
    }
}
