import Foundation
import KVArtifact
import KVQuant

// One layer's KV cache for one sequence, held in the packed layout of Docs/kv-layout.md and
// nothing else: the byte arrays below are allocated once at the plan's capacity and their sizes
// sum to exactly the layout's bytes (per sequence) — there is no f32 mirror.
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
public struct PackedKVCache {
    /// A segment of slots at one precision: keys and values as packed bytes.
    struct Segment {
        let capacity: Int
        let channels: Int
        let keyBits: KVBits
        let valueBits: KVBits
        let group: Int
        var keys: [UInt8]
        var values: [UInt8]
        /// Token id per slot (-1 empty) and its score.
        var token: [Int]
        var score: [Double]

        init(capacity: Int, channels: Int, keyBits: KVBits, valueBits: KVBits, group: Int) {
            self.capacity = capacity
            self.channels = channels
            self.keyBits = keyBits
            self.valueBits = valueBits
            self.group = group
            keys = Array(repeating: 0, count: KVSegmentLayout(kind: .keys, tokens: capacity, channels: channels, bits: keyBits, group: group).bytes)
            values = Array(repeating: 0, count: KVSegmentLayout(kind: .values, tokens: capacity, channels: channels, bits: valueBits, group: group).bytes)
            token = Array(repeating: -1, count: capacity)
            score = Array(repeating: 0, count: capacity)
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
            let keys = KVPack.unpack(Array(self.keys[range]), KVSegmentLayout(kind: .keys, tokens: slots.count, channels: channels, bits: keyBits, group: group))
            let k = slot - slots.lowerBound
            let value = KVPack.unpack(Array(values[valueRow(slot)]), KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group))
            return (Array(keys[k * channels..<(k + 1) * channels]), value)
        }

        /// Writes tokens into slots (each key group re-packed once); `nil` rows clear a slot.
        mutating func write(_ writes: [(slot: Int, token: Int, score: Double, key: [Float], value: [Float])]) {
            var groups: [Int: [(Int, [Float])]] = [:]
            for w in writes {
                token[w.slot] = w.token
                score[w.slot] = w.score
                values.replaceSubrange(valueRow(w.slot), with: KVPack.pack(w.value, KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group)))
                groups[keyGroup(w.slot).slots.lowerBound, default: []].append((w.slot, w.key))
            }
            for (first, rows) in groups.sorted(by: { $0.key < $1.key }) {
                let (slots, range) = keyGroup(first)
                let layout = KVSegmentLayout(kind: .keys, tokens: slots.count, channels: channels, bits: keyBits, group: group)
                var x = KVPack.unpack(Array(keys[range]), layout)
                for (slot, key) in rows { x.replaceSubrange((slot - first) * channels..<(slot - first + 1) * channels, with: key) }
                // Empty slots copy an occupied row so they do not widen any channel's range.
                if let filler = slots.first(where: { token[$0] >= 0 }) {
                    let row = Array(x[(filler - first) * channels..<(filler - first + 1) * channels])
                    for s in slots where token[s] < 0 { x.replaceSubrange((s - first) * channels..<(s - first + 1) * channels, with: row) }
                }
                keys.replaceSubrange(range, with: KVPack.pack(x, layout))
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

    /// An empty cache for one sequence of a layer with `channels` = KV heads × head dim.
    public init(layout: KVLayerLayout, channels: Int, group: Int = 32) {
        self.layout = layout
        self.channels = channels
        fixed = Segment(capacity: layout.sinkTokens + layout.windowTokens, channels: channels, keyBits: .b16, valueBits: .b16, group: group)
        high = Segment(capacity: layout.highTokens, channels: channels, keyBits: KVBits(rawValue: layout.keyBitsHigh) ?? .b16,
                       valueBits: KVBits(rawValue: layout.valueBitsHigh) ?? .b16, group: group)
        let lowBits = KVBits(rawValue: layout.lowBits)
        low = Segment(capacity: lowBits == nil ? 0 : layout.lowTokens, channels: channels, keyBits: lowBits ?? .b2, valueBits: lowBits ?? .b2, group: group)
    }

    /// Bytes held (all segments, keys and values) — equal to the layout's bytes per sequence.
    public var bytes: Int { fixed.bytes + high.bytes + low.bytes }

    /// Tokens held (not evicted).
    public var tokens: Int { heldTokens.count }

    /// Ids (append order, from 0) of the tokens held, sorted.
    public var heldTokens: [Int] { [fixed, high, low].flatMap { $0.token.filter { $0 >= 0 } }.sorted() }

    /// Appends the new token's key and value (`channels` each).
    public mutating func append(key: [Float], value: [Float]) {
        defer { count += 1 }
        let sinks = layout.sinkTokens
        if count < sinks {
            fixed.write([(count, count, 0, key, value)])
            return
        }
        let window = (sinks..<fixed.capacity)
        if window.isEmpty {
            admit([Moving(token: count, score: 0, key: key, value: value)])
            return
        }
        if let free = window.first(where: { fixed.token[$0] < 0 }) {
            fixed.write([(free, count, 0, key, value)])
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
        fixed.write([(order[0], count, 0, key, value)])
    }

    /// Admits tokens to the high segment; the worst-scored overflow goes to the low segment.
    mutating func admit(_ incoming: [Moving]) {
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

    /// Decode attention of `q` (heads × head dim) over every held token; adds each token's
    /// attention, summed over heads, to its score. Returns heads × value head dim.
    public mutating func attend(_ q: [Float], heads: Int, kvHeads: Int, scale: Double) -> [Float] {
        let rows = held()
        let d = q.count / heads
        let dv = channels / kvHeads
        let group = heads / kvHeads
        var out = [Float](repeating: 0, count: heads * dv)
        var received = [Double](repeating: 0, count: rows.count)
        guard !rows.isEmpty else { return out }
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
            default: low.score[row.slot] += received[n]
            }
        }
        return out
    }
}
