import Foundation
import KVArtifact
import KVQuant

// One layer's KV cache for one sequence, held in the packed layout of Docs/kv-layout.md and
// nothing else: two byte regions (keys, values) of exactly the layout's bytes per sequence, either
// owned or — in the runtime — the cache's home in a tier arena, which generated attention kernels
// read after the plan copies it. There is no f32 mirror. Region layout: keys = fixed (sinks +
// window, fp16) | high | low segment keys; values likewise (Docs/runtime.md).
//
// Per step the new token first takes part in attention at full precision (it is still in
// registers), then is appended with the attention it received as its first score.
//
// Token flow (KIVI's residual, H2O's scores, MiKV's low-precision rest):
//   * the first `sinkTokens` tokens stay in fp16 sink slots for good;
//   * later tokens enter the fp16 recent window; when it is full, its tokens leave together as
//     one block (with W = G = 32 a whole key group, quantised once, as KIVI does) while the high
//     segment has room for the block, and one at a time (the oldest) once it has not;
//   * a leaving block is admitted to the high-precision segment: of its tokens and the ones there,
//     the `highTokens` best-scored stay, the rest are demoted to the low segment (re-quantised at
//     `lowBits`), or evicted when the layout keeps no low tokens; the low segment likewise keeps
//     its best-scored tokens when it overflows (only when the context is exceeded);
//   * every token's score is the attention it has received, summed over heads and steps (H2O).
// Keys are quantised per channel over groups of G slots, so writing a slot re-quantises its
// group: the group is unpacked, the slot set, empty slots filled with an occupied row (they must
// not widen the range) and the group packed again — each group once per block.

/// One layer's packed KV cache for one sequence.
public final class PackedKVCache {
    /// A segment of slots at one precision: keys and values as packed bytes.
    struct Segment {
        let capacity: Int
        let channels: Int
        let keyBits: KVBits
        let valueBits: KVBits
        let group: Int
        let keys: UnsafeMutableRawBufferPointer
        let values: UnsafeMutableRawBufferPointer
        /// Token id per slot (-1 empty) and its score.
        var token: [Int]
        var score: [Double]

        init(capacity: Int, channels: Int, keyBits: KVBits, valueBits: KVBits, group: Int,
             keys: UnsafeMutableRawBufferPointer, values: UnsafeMutableRawBufferPointer) {
            self.capacity = capacity
            self.channels = channels
            self.keyBits = keyBits
            self.valueBits = valueBits
            self.group = group
            self.keys = keys
            self.values = values
            token = Array(repeating: -1, count: capacity)
            score = Array(repeating: 0, count: capacity)
        }

        static func keyBytes(_ capacity: Int, _ channels: Int, _ bits: KVBits, _ group: Int) -> Int {
            KVSegmentLayout(kind: .keys, tokens: capacity, channels: channels, bits: bits, group: group).bytes
        }
        static func valueBytes(_ capacity: Int, _ channels: Int, _ bits: KVBits, _ group: Int) -> Int {
            KVSegmentLayout(kind: .values, tokens: capacity, channels: channels, bits: bits, group: group).bytes
        }

        var bytes: Int { keys.count + values.count }
        var freeSlots: [Int] { token.indices.filter { token[$0] < 0 } }

        /// Slot range and byte range of the key group holding `slot`.
        func keyGroup(_ slot: Int) -> (slots: Range<Int>, bytes: Range<Int>) {
            guard keyBits.isQuantised else { return (slot..<slot + 1, slot * channels * 2..<(slot + 1) * channels * 2) }
            let g = slot / group
            let first = g * group, count = min(group, capacity - first)
            let full = KVSegmentLayout(kind: .keys, tokens: group, channels: channels, bits: keyBits, group: group).bytes
            let start = g * full
            return (first..<first + count, start..<start + KVSegmentLayout(kind: .keys, tokens: count, channels: channels, bits: keyBits, group: group).bytes)
        }

        func valueRow(_ slot: Int) -> Range<Int> {
            let row = KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group).bytes
            return slot * row..<(slot + 1) * row
        }

        /// Dequantised key and value of an occupied slot.
        func read(_ slot: Int) -> (key: [Float], value: [Float]) {
            let (slots, range) = keyGroup(slot)
            let keys = KVPack.unpack(Array(UnsafeRawBufferPointer(rebasing: self.keys[range])), KVSegmentLayout(kind: .keys, tokens: slots.count, channels: channels, bits: keyBits, group: group))
            let k = slot - slots.lowerBound
            let value = KVPack.unpack(Array(UnsafeRawBufferPointer(rebasing: values[valueRow(slot)])), KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group))
            return (Array(keys[k * channels..<(k + 1) * channels]), value)
        }

        /// Writes tokens into slots (each key group re-packed once); `nil` rows clear a slot.
        func store(_ bytes: [UInt8], _ region: UnsafeMutableRawBufferPointer, _ range: Range<Int>) {
            precondition(bytes.count == range.count, "packed \(bytes.count) bytes for a \(range.count)-byte range")
            UnsafeMutableRawBufferPointer(rebasing: region[range]).copyBytes(from: bytes)
        }

        mutating func write(_ writes: [(slot: Int, token: Int, score: Double, key: [Float], value: [Float])]) {
            var groups: [Int: [(Int, [Float])]] = [:]
            for w in writes {
                token[w.slot] = w.token
                score[w.slot] = w.score
                store(KVPack.pack(w.value, KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group)), values, valueRow(w.slot))
                groups[keyGroup(w.slot).slots.lowerBound, default: []].append((w.slot, w.key))
            }
            for (first, rows) in groups.sorted(by: { $0.key < $1.key }) {
                let (slots, range) = keyGroup(first)
                let layout = KVSegmentLayout(kind: .keys, tokens: slots.count, channels: channels, bits: keyBits, group: group)
                var x = KVPack.unpack(Array(UnsafeRawBufferPointer(rebasing: keys[range])), layout)
                for (slot, key) in rows { x.replaceSubrange((slot - first) * channels..<(slot - first + 1) * channels, with: key) }
                // Empty slots copy an occupied row so they do not widen any channel's range.
                if let filler = slots.first(where: { token[$0] >= 0 }) {
                    let row = Array(x[(filler - first) * channels..<(filler - first + 1) * channels])
                    for s in slots where token[s] < 0 { x.replaceSubrange((s - first) * channels..<(s - first + 1) * channels, with: row) }
                }
                store(KVPack.pack(x, layout), keys, range)
            }
        }

        mutating func clear(_ slot: Int) {
            token[slot] = -1
            score[slot] = 0
        }
    }

    /// A token on its way between segments.
    struct Moving {
        var token: Int
        var score: Double
        var key: [Float]
        var value: [Float]
    }

    public let layout: KVLayerLayout
    let channels: Int
    var fixed: Segment
    var high: Segment
    var low: Segment
    /// Tokens appended so far (the next token's id).
    public private(set) var count = 0
    /// Tokens dropped so far.
    public private(set) var evicted = 0
    /// Memory this cache allocated itself (nil when it lives in a caller's region).
    private let owned: UnsafeMutableRawBufferPointer?

    /// Bytes of the key region and of the value region for one sequence of `layout`.
    public static func regionBytes(layout: KVLayerLayout, channels: Int, group: Int = 32) -> (keys: Int, values: Int) {
        let (f, hk, hv, lb) = bits(layout)
        let fixed = layout.sinkTokens + layout.windowTokens, low = lb == nil ? 0 : layout.lowTokens
        return (Segment.keyBytes(fixed, channels, f, group) + Segment.keyBytes(layout.highTokens, channels, hk, group)
                    + Segment.keyBytes(low, channels, lb ?? .b2, group),
                Segment.valueBytes(fixed, channels, f, group) + Segment.valueBytes(layout.highTokens, channels, hv, group)
                    + Segment.valueBytes(low, channels, lb ?? .b2, group))
    }

    private static func bits(_ layout: KVLayerLayout) -> (KVBits, KVBits, KVBits, KVBits?) {
        (.b16, KVBits(rawValue: layout.keyBitsHigh) ?? .b16, KVBits(rawValue: layout.valueBitsHigh) ?? .b16, KVBits(rawValue: layout.lowBits))
    }

    /// An empty cache for one sequence of a layer with `channels` = KV heads × head dim, holding
    /// its bytes in `keys` and `values` (each exactly `regionBytes`) or, when nil, in memory of its own.
    public init(layout: KVLayerLayout, channels: Int, group: Int = 32,
                keys: UnsafeMutableRawBufferPointer? = nil, values: UnsafeMutableRawBufferPointer? = nil) {
        let size = Self.regionBytes(layout: layout, channels: channels, group: group)
        let keyRegion: UnsafeMutableRawBufferPointer, valueRegion: UnsafeMutableRawBufferPointer
        if let keys, let values {
            precondition(keys.count == size.keys && values.count == size.values,
                         "KV regions of \(keys.count)/\(values.count) B for a layout of \(size.keys)/\(size.values) B")
            (keyRegion, valueRegion, owned) = (keys, values, nil)
        } else {
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, size.keys + size.values), alignment: 64)
            (keyRegion, valueRegion, owned) = (UnsafeMutableRawBufferPointer(rebasing: memory[0..<size.keys]),
                                               UnsafeMutableRawBufferPointer(rebasing: memory[size.keys..<size.keys + size.values]), memory)
        }
        keyRegion.initializeMemory(as: UInt8.self, repeating: 0)
        valueRegion.initializeMemory(as: UInt8.self, repeating: 0)
        self.layout = layout
        self.channels = channels
        let (f, hk, hv, lb) = Self.bits(layout)
        let capacities = [layout.sinkTokens + layout.windowTokens, layout.highTokens, lb == nil ? 0 : layout.lowTokens]
        let bitsOf: [(KVBits, KVBits)] = [(f, f), (hk, hv), (lb ?? .b2, lb ?? .b2)]
        var segments: [Segment] = []
        var (k0, v0) = (0, 0)
        for (capacity, (kb, vb)) in zip(capacities, bitsOf) {
            let (kn, vn) = (Segment.keyBytes(capacity, channels, kb, group), Segment.valueBytes(capacity, channels, vb, group))
            segments.append(Segment(capacity: capacity, channels: channels, keyBits: kb, valueBits: vb, group: group,
                                    keys: UnsafeMutableRawBufferPointer(rebasing: keyRegion[k0..<k0 + kn]),
                                    values: UnsafeMutableRawBufferPointer(rebasing: valueRegion[v0..<v0 + vn])))
            k0 += kn
            v0 += vn
        }
        (fixed, high, low) = (segments[0], segments[1], segments[2])
    }

    deinit { owned?.deallocate() }

    /// Bytes held (all segments, keys and values) — equal to the layout's bytes per sequence.
    public var bytes: Int { fixed.bytes + high.bytes + low.bytes }

    /// Tokens held (not evicted).
    public var tokens: Int { heldTokens.count }

    /// Ids (append order, from 0) of the tokens held, sorted.
    public var heldTokens: [Int] { [fixed, high, low].flatMap { $0.token.filter { $0 >= 0 } }.sorted() }

    /// The token id in every slot (fixed, then high, then low segment; -1 empty) — the occupancy
    /// generated attention kernels read.
    public var slotTokens: [Int] { fixed.token + high.token + low.token }

    /// Adds attention received per slot (in `slotTokens` order) to the slots' scores.
    public func addReceived(_ received: UnsafeBufferPointer<Float>) {
        precondition(received.count >= fixed.capacity + high.capacity + low.capacity)
        for s in 0..<fixed.capacity { fixed.score[s] += Double(received[s]) }
        for s in 0..<high.capacity { high.score[s] += Double(received[fixed.capacity + s]) }
        for s in 0..<low.capacity { low.score[s] += Double(received[fixed.capacity + high.capacity + s]) }
    }

    /// Appends the new token's key and value (`channels` each) with its first score.
    public func append(key: [Float], value: [Float], score: Double = 0) {
        defer { count += 1 }
        let sinks = layout.sinkTokens
        if count < sinks {
            fixed.write([(count, count, score, key, value)])
            return
        }
        let window = (sinks..<fixed.capacity)
        if window.isEmpty {
            admit([Moving(token: count, score: score, key: key, value: value)])
            return
        }
        if let free = window.first(where: { fixed.token[$0] < 0 }) {
            fixed.write([(free, count, score, key, value)])
            return
        }
        // The window is full: its oldest tokens leave — the whole window as one block (one key
        // group, quantised once) while the high segment has room for it, else just the oldest
        // token, so no token is dropped while the layout still has room — then the new one enters.
        let order = window.sorted { fixed.token[$0] < fixed.token[$1] }
        let leavingCount = high.freeSlots.count >= order.count ? order.count : 1
        let leaving = order.prefix(leavingCount).map { s -> Moving in
            let (k, v) = fixed.read(s)
            return Moving(token: fixed.token[s], score: fixed.score[s], key: k, value: v)
        }
        for s in order.prefix(leavingCount) { fixed.clear(s) }
        admit(leaving)
        fixed.write([(order[0], count, score, key, value)])
    }

    /// Admits tokens to the high segment; the worst-scored overflow goes to the low segment.
    func admit(_ incoming: [Moving]) {
        let demoted = place(incoming, into: &high)
        let dropped = place(demoted, into: &low)
        evicted += dropped.count
    }

    /// Keeps the best-scored of `segment`'s tokens and `incoming` (ties: the newer token); returns the rest.
    func place(_ incoming: [Moving], into segment: inout Segment) -> [Moving] {
        guard !incoming.isEmpty else { return [] }
        let resident = segment.token.indices.filter { segment.token[$0] >= 0 }
        let candidates = resident.map { (score: segment.score[$0], token: segment.token[$0], slot: Optional($0), moving: -1) }
            + incoming.enumerated().map { (score: $1.score, token: $1.token, slot: Optional<Int>.none, moving: $0) }
        let ranked = candidates.sorted { ($0.score, $0.token) > ($1.score, $1.token) }
        let kept = ranked.prefix(segment.capacity)
        var out: [Moving] = []
        var freed: [Int] = []
        for c in ranked.dropFirst(segment.capacity) {
            if let slot = c.slot {
                let (k, v) = segment.read(slot)
                out.append(Moving(token: c.token, score: c.score, key: k, value: v))
                freed.append(slot)
            } else {
                out.append(incoming[c.moving])
            }
        }
        for slot in freed { segment.clear(slot) }
        var free = segment.freeSlots
        var writes: [(slot: Int, token: Int, score: Double, key: [Float], value: [Float])] = []
        for c in kept where c.slot == nil {
            let m = incoming[c.moving]
            writes.append((free.removeFirst(), m.token, m.score, m.key, m.value))
        }
        segment.write(writes)
        return out
    }

    /// Every held token: its dequantised key and value, and where it lives (segment, slot).
    func held() -> [(key: [Float], value: [Float], segment: Int, slot: Int)] {
        var out: [(key: [Float], value: [Float], segment: Int, slot: Int)] = []
        for (i, s) in [fixed, high, low].enumerated() {
            for slot in s.token.indices where s.token[slot] >= 0 {
                let (k, v) = s.read(slot)
                out.append((k, v, i, slot))
            }
        }
        return out
    }

    /// Decode attention of `q` (heads × head dim) over every held token and the new token's
    /// `key`/`value` (full precision); adds each held token's attention, summed over heads, to its
    /// score. Returns heads × value head dim and the attention the new token received (its first
    /// score when it is appended next).
    public func attend(_ q: [Float], key: [Float], value: [Float], heads: Int, kvHeads: Int, scale: Double) -> (out: [Float], newScore: Double) {
        let rows = held() + [(key, value, -1, -1)]
        let d = q.count / heads
        let dv = channels / kvHeads
        let group = heads / kvHeads
        var out = [Float](repeating: 0, count: heads * dv)
        var received = [Double](repeating: 0, count: rows.count)
        for h in 0..<heads {
            let g = h / group
            let head = ReferenceInterpreter.attendHead(tokens: 0...(rows.count - 1), d: d, dv: dv, scale: scale, query: { Double(q[h * d + $0]) },
                                                       key: { Double(rows[$0].key[g * d + $1]) }, value: { Double(rows[$0].value[g * dv + $1]) })
            for i in 0..<dv { out[h * dv + i] = Float(head.out[i]) }
            for n in rows.indices { received[n] += head.weights[n] }
        }
        for (n, row) in rows.enumerated() {
            switch row.segment {
            case 0: fixed.score[row.slot] += received[n]
            case 1: high.score[row.slot] += received[n]
            case 2: low.score[row.slot] += received[n]
            default: break
            }
        }
        return (out, received[rows.count - 1])
    }
}
