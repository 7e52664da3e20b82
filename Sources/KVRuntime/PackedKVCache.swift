import Foundation
import KVArtifact
import Algorithms
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
// Selection is per KV head (H2O and SnapKV score per head; the heads of a GQA group share one KV
// head, so their attention is summed): every KV head has its own slot table and scores, and slot s
// of head g may hold a different token than slot s of head g'. The bytes do not change — a slot is
// a row of every head's channels; each head writes only its own channels.
//
// Token flow per KV head (KIVI's residual, H2O's scores, MiKV's low-precision rest):
//   * the first `sinkTokens` tokens stay in fp16 sink slots for good;
//   * later tokens enter the fp16 recent window; when it is full, its tokens leave together as
//     one block (with W = G = 32 a whole key group, quantised once, as KIVI does) while the high
//     segment has room for the block, and one at a time (the oldest) once it has not;
//   * a leaving block is admitted to the high-precision segment: of its tokens and the ones there,
//     the `highTokens` best-scored stay, the rest are demoted to the low segment (re-quantised at
//     `lowBits`), or evicted when the layout keeps no low tokens; the low segment likewise keeps
//     its best-scored tokens when it overflows (only when the context is exceeded);
//   * a token's score under head g is the attention the query heads of g's group gave it, summed
//     over those heads and over steps (H2O).
// Keys are quantised per channel over groups of G slots, so writing a slot re-quantises its
// group's rows of the writing head's channels: those rows are unpacked, the slot set, empty slots
// filled with an occupied row of the same head (they must not widen the range) and packed again —
// each group once per block. Values are quantised per token over groups of G channels; when a
// head's channels are not whole groups (head_dim % 32 ≠ 0), a group shared with the neighbouring
// head is re-packed from its dequantised values (idempotent up to fp16 rounding of the scale).

/// One layer's packed KV cache for one sequence.
public final class PackedKVCache {
    /// A slot write of one KV head: the head's key and value channels.
    typealias Write = (slot: Int, token: Int, score: Double, key: [Float], value: [Float])

    /// A segment of slots at one precision: keys and values as packed bytes.
    struct Segment {
        let capacity: Int
        let channels: Int
        let heads: Int
        let keyBits: KVBits
        let valueBits: KVBits
        let group: Int
        let keys: UnsafeMutableRawBufferPointer
        let values: UnsafeMutableRawBufferPointer
        /// Token id per KV head and slot (-1 empty) and its score.
        var token: [[Int]]
        var score: [[Double]]

        init(capacity: Int, channels: Int, heads: Int, keyBits: KVBits, valueBits: KVBits, group: Int,
             keys: UnsafeMutableRawBufferPointer, values: UnsafeMutableRawBufferPointer) {
            self.capacity = capacity
            self.channels = channels
            self.heads = heads
            self.keyBits = keyBits
            self.valueBits = valueBits
            self.group = group
            self.keys = keys
            self.values = values
            token = Array(repeating: Array(repeating: -1, count: capacity), count: heads)
            score = Array(repeating: Array(repeating: 0, count: capacity), count: heads)
        }

        static func keyBytes(_ capacity: Int, _ channels: Int, _ bits: KVBits, _ group: Int) -> Int {
            KVSegmentLayout(kind: .keys, tokens: capacity, channels: channels, bits: bits, group: group).bytes
        }
        static func valueBytes(_ capacity: Int, _ channels: Int, _ bits: KVBits, _ group: Int) -> Int {
            KVSegmentLayout(kind: .values, tokens: capacity, channels: channels, bits: bits, group: group).bytes
        }

        var bytes: Int { keys.count + values.count }
        /// Channels of one KV head.
        var headChannels: Int { channels / heads }
        func freeSlots(_ h: Int) -> [Int] { token[h].indices.filter { token[h][$0] < 0 } }

        /// Head `h`'s occupied slots counted, and the worst of them by (score, token) — the one
        /// `place` evicts first — or nil when none is occupied.
        func residents(_ h: Int) -> (count: Int, worst: Int?) {
            token[h].withUnsafeBufferPointer { token in
                score[h].withUnsafeBufferPointer { score in
                    var count = 0, worst = -1
                    for s in token.indices where token[s] >= 0 {
                        count += 1
                        if worst < 0 || (score[s], token[s]) < (score[worst], token[worst]) { worst = s }
                    }
                    return (count, worst < 0 ? nil : worst)
                }
            }
        }

        /// Adds `received[s]` to head `h`'s score of slot s, for every slot.
        mutating func addReceived(head h: Int, _ received: UnsafePointer<Float>) {
            score[h].withUnsafeMutableBufferPointer { score in
                for s in score.indices { score[s] += Double(received[s]) }
            }
        }

        /// Head `h`'s token id per slot as Int32 at `out`.
        func writeTokens(head h: Int, to out: UnsafeMutablePointer<Int32>) {
            token[h].withUnsafeBufferPointer { token in
                for s in token.indices { out[s] = Int32(truncatingIfNeeded: token[s]) }
            }
        }

        /// Slots of the key group holding `slot`, and the bytes and layout of head `h`'s part of it
        /// (quantised: the head's channel rows of the group; fp16: the head's channels of the slot).
        /// Quantised keys are stored head-major (`[head][group][head's channel rows]`,
        /// KVSegmentLayout), so each KV head's rows are one contiguous stream.
        func headKeys(_ slot: Int, _ h: Int) -> (slots: Range<Int>, bytes: Range<Int>, layout: KVSegmentLayout) {
            let d = headChannels
            guard keyBits.isQuantised else {
                let start = (slot * channels + h * d) * 2
                return (slot..<slot + 1, start..<start + d * 2, KVSegmentLayout(kind: .keys, tokens: 1, channels: d, bits: .b16, group: group))
            }
            let g = slot / group
            let first = g * group, count = min(group, capacity - first)
            let headBytes = KVSegmentLayout(kind: .keys, tokens: capacity, channels: channels, bits: keyBits, group: group).bytes / heads
            let fullRowBytes = KVSegmentLayout.groupHeaderBytes + KVSegmentLayout.packedBytes(group, bits: keyBits.bits)
            let rowBytes = KVSegmentLayout.groupHeaderBytes + KVSegmentLayout.packedBytes(count, bits: keyBits.bits)
            let start = h * headBytes + g * d * fullRowBytes
            return (first..<first + count, start..<start + d * rowBytes,
                    KVSegmentLayout(kind: .keys, tokens: count, channels: d, bits: keyBits, group: group))
        }

        /// Bytes of `slot`'s value row (every head's channels), where values are token-major.
        func valueRow(_ slot: Int) -> Range<Int> {
            let row = KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group).bytes
            return slot * row..<(slot + 1) * row
        }

        /// Bytes and layout of head `h`'s channels of `slot` when they are whole groups (or fp16);
        /// nil when a quantisation group spans two heads. Quantised values of whole groups are
        /// stored head-major (`[head][slot][head's groups]`, KVSegmentLayout), so each KV head's
        /// rows are contiguous; fp16 values and groups spanning heads are token-major.
        func headValues(_ slot: Int, _ h: Int) -> (bytes: Range<Int>, layout: KVSegmentLayout)? {
            let d = headChannels
            let layout = KVSegmentLayout(kind: .values, tokens: 1, channels: d, bits: valueBits, group: group)
            guard valueBits.isQuantised else {
                let row = valueRow(slot)
                return (row.lowerBound + h * d * 2..<row.lowerBound + (h + 1) * d * 2, layout)
            }
            guard d % group == 0 else { return nil }
            let start = (h * capacity + slot) * layout.bytes
            return (start..<start + layout.bytes, layout)
        }

        func load(_ region: UnsafeMutableRawBufferPointer, _ range: Range<Int>) -> [UInt8] {
            Array(UnsafeRawBufferPointer(rebasing: region[range]))
        }

        func store(_ bytes: [UInt8], _ region: UnsafeMutableRawBufferPointer, _ range: Range<Int>) {
            precondition(bytes.count == range.count, "packed \(bytes.count) bytes for a \(range.count)-byte range")
            UnsafeMutableRawBufferPointer(rebasing: region[range]).copyBytes(from: bytes)
        }

        /// Dequantised key and value channels of head `h` in an occupied slot.
        func read(_ slot: Int, _ h: Int) -> (key: [Float], value: [Float]) {
            let d = headChannels
            let (slots, range, layout) = headKeys(slot, h)
            let keys = KVPack.unpack(load(self.keys, range), layout)
            let k = slot - slots.lowerBound
            return (Array(keys[k * d..<(k + 1) * d]), readValue(slot, h))
        }

        /// Dequantised value channels of head `h` in an occupied slot.
        func readValue(_ slot: Int, _ h: Int) -> [Float] {
            let d = headChannels
            if let (bytes, layout) = headValues(slot, h) { return KVPack.unpack(load(values, bytes), layout) }
            let row = KVPack.unpack(load(values, valueRow(slot)), KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group))
            return Array(row[h * d..<(h + 1) * d])
        }

        /// Writes tokens into head `h`'s part of slots (each key group re-packed once).
        mutating func write(_ writes: [Write], head h: Int) {
            let d = headChannels
            var groups: [Int: [(Int, [Float])]] = [:]
            for w in writes {
                token[h][w.slot] = w.token
                score[h][w.slot] = w.score
                if let (bytes, layout) = headValues(w.slot, h) {
                    store(KVPack.pack(w.value, layout), values, bytes)
                } else {
                    // A group spans two heads: re-pack the row and store the groups holding h's channels.
                    let full = KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: valueBits, group: group)
                    let rowRange = valueRow(w.slot)
                    var row = KVPack.unpack(load(values, rowRange), full)
                    row.replaceSubrange(h * d..<(h + 1) * d, with: w.value)
                    let packed = KVPack.pack(row, full)
                    let groupBytes = KVSegmentLayout.groupHeaderBytes + KVSegmentLayout.packedBytes(group, bits: valueBits.bits)
                    let from = (h * d / group) * groupBytes, to = min(packed.count, ((h + 1) * d + group - 1) / group * groupBytes)
                    store(Array(packed[from..<to]), values, rowRange.lowerBound + from..<rowRange.lowerBound + to)
                }
                groups[headKeys(w.slot, h).slots.lowerBound, default: []].append((w.slot, w.key))
            }
            for (first, rows) in groups.sorted(by: { $0.key < $1.key }) {
                let (slots, range, layout) = headKeys(first, h)
                var x = KVPack.unpack(load(keys, range), layout)
                for (slot, key) in rows { x.replaceSubrange((slot - first) * d..<(slot - first + 1) * d, with: key) }
                // Empty slots copy an occupied row so they do not widen any channel's range.
                if let filler = slots.first(where: { token[h][$0] >= 0 }) {
                    let row = Array(x[(filler - first) * d..<(filler - first + 1) * d])
                    for s in slots where token[h][s] < 0 { x.replaceSubrange((s - first) * d..<(s - first + 1) * d, with: row) }
                }
                store(KVPack.pack(x, layout), keys, range)
            }
        }

        mutating func clear(_ slot: Int, head h: Int) {
            token[h][slot] = -1
            score[h][slot] = 0
        }
    }

    /// A token on its way between segments (one KV head's channels).
    struct Moving {
        var token: Int
        var score: Double
        var key: [Float]
        var value: [Float]
    }

    public let layout: KVLayerLayout
    let channels: Int
    /// KV heads, each selecting its own tokens.
    public let kvHeads: Int
    var fixed: Segment
    var high: Segment
    var low: Segment
    /// Tokens appended so far (the next token's id).
    public private(set) var count = 0
    /// Tokens dropped so far, per KV head (every head drops as many; which ones differ).
    public private(set) var evicted = 0
    /// Whether one incoming token is placed by `place(_:into:head:)`'s single scan (false: by the
    /// general selection, which tests compare it with).
    var placesOneByScan = true
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
    public init(layout: KVLayerLayout, channels: Int, kvHeads: Int = 1, group: Int = 32,
                keys: UnsafeMutableRawBufferPointer? = nil, values: UnsafeMutableRawBufferPointer? = nil) {
        precondition(kvHeads >= 1 && channels % kvHeads == 0, "\(channels) channels do not split over \(kvHeads) KV heads")
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
        self.kvHeads = kvHeads
        let (f, hk, hv, lb) = Self.bits(layout)
        let capacities = [layout.sinkTokens + layout.windowTokens, layout.highTokens, lb == nil ? 0 : layout.lowTokens]
        let bitsOf: [(KVBits, KVBits)] = [(f, f), (hk, hv), (lb ?? .b2, lb ?? .b2)]
        var segments: [Segment] = []
        var (k0, v0) = (0, 0)
        for (capacity, (kb, vb)) in zip(capacities, bitsOf) {
            let (kn, vn) = (Segment.keyBytes(capacity, channels, kb, group), Segment.valueBytes(capacity, channels, vb, group))
            segments.append(Segment(capacity: capacity, channels: channels, heads: kvHeads, keyBits: kb, valueBits: vb, group: group,
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

    /// Slots per KV head (fixed, high and low segments).
    public var slots: Int { fixed.capacity + high.capacity + low.capacity }

    /// Tokens held per KV head (every head holds as many; which ones may differ).
    public var tokens: Int { heldTokens(head: 0).count }

    /// Ids (append order, from 0) of the tokens KV head `head` holds, sorted.
    public func heldTokens(head: Int) -> [Int] { [fixed, high, low].flatMap { $0.token[head].filter { $0 >= 0 } }.sorted() }

    /// The token id in every slot of KV head `head` (fixed, then high, then low segment; -1
    /// empty) — the occupancy generated attention kernels read.
    public func slotTokens(head: Int) -> [Int] { fixed.token[head] + high.token[head] + low.token[head] }

    /// The score (attention received so far) in every slot of KV head `head`, in slotTokens' order.
    public func slotScores(head: Int) -> [Double] { fixed.score[head] + high.score[head] + low.score[head] }

    /// The largest |scale| among the 4-bit value groups this cache's segments hold (0 without
    /// any): the generated kernel's 16-bit value products (ValueProductRounding) are exact to
    /// within `valueRoundingBound`, which grows with it.
    public var largestValueScale: Float {
        var largest: Float = 0
        for s in [fixed, high, low] where s.valueBits == .b4 && s.capacity > 0 {
            let groupBytes = KVSegmentLayout.groupHeaderBytes + KVSegmentLayout.packedBytes(s.group, bits: 4)
            let rowBytes = KVSegmentLayout(kind: .values, tokens: 1, channels: channels, bits: .b4, group: s.group).bytes
            for row in 0..<s.capacity {
                for g in 0..<channels / s.group {
                    let bits = s.values.load(fromByteOffset: row * rowBytes + g * groupBytes, as: UInt16.self)
                    largest = max(largest, abs(Float(Float16(bitPattern: bits))))
                }
            }
        }
        return largest
    }

    /// How far the generated attention kernel's outputs may differ from the exact products
    /// because its 4-bit value groups are multiplied in 16-bit integers (ValueProductRounding):
    /// 0 where that kernel does not apply (no 4-bit values, or head_dim not a multiple of 32).
    public var valueRoundingBound: Float {
        guard ValueProductRounding.applies(bits: .b4, headDim: channels / kvHeads) else { return 0 }
        return ValueProductRounding.errorBound(largestScale: largestValueScale)
    }

    /// Adds attention received per KV head and slot (head-major, `slots` per head) to the scores.
    public func addReceived(_ received: UnsafeBufferPointer<Float>) {
        precondition(received.count >= kvHeads * slots)
        let r = received.baseAddress!
        for h in 0..<kvHeads {
            fixed.addReceived(head: h, r + h * slots)
            high.addReceived(head: h, r + h * slots + fixed.capacity)
            low.addReceived(head: h, r + h * slots + fixed.capacity + high.capacity)
        }
    }

    /// Writes KV head `h`'s token id per slot (slotTokens' order, -1 empty) as Int32 at `out`.
    public func writeSlotTokens(head h: Int, to out: UnsafeMutablePointer<Int32>) {
        fixed.writeTokens(head: h, to: out)
        high.writeTokens(head: h, to: out + fixed.capacity)
        low.writeTokens(head: h, to: out + fixed.capacity + high.capacity)
    }

    /// Appends the new token's key and value (`channels` each) with its first score per KV head.
    public func append(key: [Float], value: [Float], scores: [Double]) {
        precondition(key.count == channels && value.count == channels && scores.count == kvHeads)
        let d = channels / kvHeads
        let dropped = (0..<kvHeads).map { h in
            append(head: h, Moving(token: count, score: scores[h], key: Array(key[h * d..<(h + 1) * d]), value: Array(value[h * d..<(h + 1) * d])))
        }
        evicted += dropped.max() ?? 0
        count += 1
    }

    /// One KV head's part of `append`; returns the tokens it dropped.
    private func append(head h: Int, _ new: Moving) -> Int {
        let sinks = layout.sinkTokens
        if count < sinks {
            fixed.write([(count, count, new.score, new.key, new.value)], head: h)
            return 0
        }
        let window = (sinks..<fixed.capacity)
        if window.isEmpty { return admit([new], head: h) }
        if let free = window.first(where: { fixed.token[h][$0] < 0 }) {
            fixed.write([(free, count, new.score, new.key, new.value)], head: h)
            return 0
        }
        // The window is full: its oldest tokens leave — the whole window as one block (one key
        // group, quantised once) while the high segment has room for it, else just the oldest
        // token, so no token is dropped while the layout still has room — then the new one enters.
        let order = window.sorted { fixed.token[h][$0] < fixed.token[h][$1] }
        let highResidents = high.residents(h)
        let leavingCount = high.capacity - highResidents.count >= order.count ? order.count : 1
        let leaving = order.prefix(leavingCount).map { s -> Moving in
            let (k, v) = fixed.read(s, h)
            return Moving(token: fixed.token[h][s], score: fixed.score[h][s], key: k, value: v)
        }
        for s in order.prefix(leavingCount) { fixed.clear(s, head: h) }
        // The high segment has not changed since its scan: `place` reuses it.
        let dropped = admit(leaving, head: h, highResidents: highResidents)
        fixed.write([(order[0], count, new.score, new.key, new.value)], head: h)
        return dropped
    }

    /// Admits tokens to head `h`'s high segment; the worst-scored overflow goes to the low
    /// segment. Returns the tokens dropped.
    func admit(_ incoming: [Moving], head h: Int, highResidents: (count: Int, worst: Int?)? = nil) -> Int {
        // Without a low segment the demoted tokens are dropped: their keys and values are not read.
        let demoted = place(incoming, into: &high, head: h, residents: highResidents, readsLeaving: low.capacity > 0)
        return place(demoted, into: &low, head: h).count
    }

    /// Keeps the best-scored of head `h`'s tokens in `segment` and `incoming` (ties: the newer
    /// token); returns the rest.
    /// `residents`: the segment's `residents(h)` when the caller has it; `readsLeaving`: whether
    /// the tokens that leave need their keys and values (false: they are dropped).
    func place(_ incoming: [Moving], into segment: inout Segment, head h: Int,
               residents known: (count: Int, worst: Int?)? = nil, readsLeaving: Bool = true) -> [Moving] {
        guard !incoming.isEmpty else { return [] }
        if incoming.count == 1 && placesOneByScan { return place(incoming[0], into: &segment, head: h, residents: known, readsLeaving: readsLeaving) }
        let resident = segment.token[h].indices.filter { segment.token[h][$0] >= 0 }
        let candidates = resident.map { (score: segment.score[h][$0], token: segment.token[h][$0], slot: Optional($0), moving: -1) }
            + incoming.enumerated().map { (score: $1.score, token: $1.token, slot: Optional<Int>.none, moving: $0) }
        // The candidates beyond the capacity leave: the worst by (score, token), best first. A
        // step usually moves one token into a full segment, so they are selected (O(n·k)) rather
        // than all candidates sorted.
        let worse = { (a: Int, b: Int) in (candidates[a].score, candidates[a].token) < (candidates[b].score, candidates[b].token) }
        let leaving = candidates.indices.min(count: max(0, candidates.count - segment.capacity), sortedBy: worse).reversed()
        let left = Set(leaving)
        // The incoming tokens that stay, best first (the order they take the free slots in).
        let arriving = candidates.indices.filter { candidates[$0].slot == nil && !left.contains($0) }.sorted { worse($1, $0) }
        var out: [Moving] = []
        var freed: [Int] = []
        for c in leaving.map({ candidates[$0] }) {
            if let slot = c.slot {
                let (k, v) = readsLeaving ? segment.read(slot, h) : ([], [])
                out.append(Moving(token: c.token, score: c.score, key: k, value: v))
                freed.append(slot)
            } else {
                out.append(incoming[c.moving])
            }
        }
        for slot in freed { segment.clear(slot, head: h) }
        var free = segment.freeSlots(h)
        var writes: [Write] = []
        for c in arriving {
            let m = incoming[candidates[c].moving]
            writes.append((free.removeFirst(), m.token, m.score, m.key, m.value))
        }
        segment.write(writes, head: h)
        return out
    }

    /// `place` for one incoming token (every decode step once the window is full): the same
    /// choice — the worst of the residents and the newcomer by (score, token) leaves when the
    /// segment is full, else the newcomer takes the first free slot — found in one scan over the
    /// slots, without the candidate list, selection and sets of the general case (which were a
    /// quarter of the cache manager's samples, measured).
    private func place(_ m: Moving, into segment: inout Segment, head h: Int, residents known: (count: Int, worst: Int?)?,
                       readsLeaving: Bool) -> [Moving] {
        let (resident, worst) = known ?? segment.residents(h)
        if resident < segment.capacity {
            let free = segment.token[h].firstIndex { $0 < 0 }!
            segment.write([(free, m.token, m.score, m.key, m.value)], head: h)
            return []
        }
        guard let w = worst, !((m.score, m.token) < (segment.score[h][w], segment.token[h][w])) else { return [m] }
        let (k, v) = readsLeaving ? segment.read(w, h) : ([], [])
        let out = Moving(token: segment.token[h][w], score: segment.score[h][w], key: k, value: v)
        segment.clear(w, head: h)
        segment.write([(w, m.token, m.score, m.key, m.value)], head: h)
        return [out]
    }

    /// Every token KV head `h` holds as rows: dequantised keys and values (`rows × head dim`
    /// each, `spare` more rows left zero for the caller) and where each row lives (segment, slot),
    /// in segment then slot order.
    struct HeldRows {
        var keys: [Float]
        var values: [Float]
        var places: [(segment: Int, slot: Int)]
    }

    /// Head `h`'s held tokens as rows (see HeldRows), `spare` rows appended for the caller.
    func held(head h: Int, spare: Int = 0) -> HeldRows {
        let d = channels / kvHeads
        let segments = [fixed, high, low]
        let places = segments.enumerated().flatMap { i, s in s.token[h].indices.filter { s.token[h][$0] >= 0 }.map { (segment: i, slot: $0) } }
        var keys = [Float](repeating: 0, count: (places.count + spare) * d)
        var values = [Float](repeating: 0, count: (places.count + spare) * d)
        keys.withUnsafeMutableBufferPointer { keys in
            values.withUnsafeMutableBufferPointer { values in
                // A quantised key group holds 32 slots: unpack it once for all of them (the same
                // values `read` gives slot by slot).
                var group: (segment: Int, first: Int)?
                var scratch = [Float](repeating: 0, count: fixed.group * d)  // one key group of the head
                for (n, place) in places.enumerated() {
                    let s = segments[place.segment]
                    let (slots, range, layout) = s.headKeys(place.slot, h)
                    scratch.withUnsafeMutableBufferPointer { scratch in
                        if group == nil || group! != (place.segment, slots.lowerBound) {
                            KVPack.unpack(UnsafeRawBufferPointer(rebasing: s.keys[range]), layout, into: scratch.baseAddress!, rowStride: d)
                            group = (place.segment, slots.lowerBound)
                        }
                        let k = place.slot - slots.lowerBound
                        (keys.baseAddress! + n * d).update(from: scratch.baseAddress! + k * d, count: d)
                    }
                    if let (bytes, layout) = s.headValues(place.slot, h) {
                        KVPack.unpack(UnsafeRawBufferPointer(rebasing: s.values[bytes]), layout, into: values.baseAddress! + n * d, rowStride: d)
                    } else {
                        let row = s.readValue(place.slot, h)
                        for i in 0..<d { values[n * d + i] = row[i] }
                    }
                }
            }
        }
        return HeldRows(keys: keys, values: values, places: places)
    }

    /// The key group holding `place` (segment·slots + the group's first slot) and the slot's index in it.
    func keyGroup(_ place: (segment: Int, slot: Int)) -> (key: Int, index: Int) {
        let group = fixed.group
        return (place.segment * slots + place.slot / group * group, place.slot % group)
    }

    /// KV head `h`'s key groups among `places` that the integer kernel multiplies
    /// (KeyProductRounding.applies), keyed by `keyGroup`: their codes, scales and zero points as stored.
    func integerKeyGroups(_ places: [(segment: Int, slot: Int)], head h: Int, headDim: Int) -> [Int: (codes: [UInt8], scales: [Float], zeros: [Float])] {
        let segments = [fixed, high, low]
        var out: [Int: (codes: [UInt8], scales: [Float], zeros: [Float])] = [:]
        for place in places {
            let s = segments[place.segment]
            let first = keyGroup(place).key
            guard out[first] == nil else { continue }
            let (_, range, layout) = s.headKeys(place.slot, h)
            guard KeyProductRounding.applies(bits: s.keyBits, tokens: layout.tokens, headDim: headDim) else { continue }
            out[first] = KVPack.keyGroupCodes(UnsafeRawBufferPointer(rebasing: s.keys[range]), layout)
        }
        return out
    }

    /// Decode attention of `q` (heads × head dim) over the tokens each KV head holds and the new
    /// token's `key`/`value` (full precision); adds each held token's attention, summed over the
    /// query heads of its KV head's group, to its score under that KV head. Returns heads × value
    /// head dim and the attention the new token received per KV head (its first scores when it is
    /// appended next).
    public func attend(_ q: [Float], key: [Float], value: [Float], heads: Int, kvHeads: Int, scale: Double) -> (out: [Float], newScores: [Double]) {
        precondition(kvHeads == self.kvHeads, "a cache of \(self.kvHeads) KV heads attended with \(kvHeads)")
        let d = q.count / heads
        let dv = channels / kvHeads
        let group = heads / kvHeads
        var out = [Float](repeating: 0, count: heads * dv)
        var newScores = [Double](repeating: 0, count: kvHeads)
        for g in 0..<kvHeads {
            var rows = held(head: g, spare: 1)  // rows of dv channels; the new token's goes last
            let n = rows.places.count
            for i in 0..<dv { rows.keys[n * dv + i] = key[g * dv + i]; rows.values[n * dv + i] = value[g * dv + i] }
            var received = [Double](repeating: 0, count: n + 1)
            let integerGroups = integerKeyGroups(rows.places, head: g, headDim: d)
            for h in g * group..<(g + 1) * group {
                let head = q.withUnsafeBufferPointer { q in
                    var products: [Double?]?
                    if !integerGroups.isEmpty {
                        // Whole 4-bit key groups: q·k as the integer kernel computes it.
                        var logits: [Int: [Double]] = [:]
                        for (first, group) in integerGroups {
                            logits[first] = KeyProductRounding.logits(query: q.baseAddress! + h * d, codes: group.codes, scales: group.scales,
                                                                      zeros: group.zeros, tokens: KeyProductRounding.groupTokens)
                        }
                        products = rows.places.map { place in
                            let (first, index) = keyGroup(place)
                            return logits[first].map { $0[index] }
                        } + [nil]
                    }
                    return rows.keys.withUnsafeBufferPointer { k in
                        rows.values.withUnsafeBufferPointer { v in
                            ReferenceInterpreter.attendHead(query: q.baseAddress! + h * d, keys: k.baseAddress!, keyStride: dv, values: v.baseAddress!,
                                                            valueStride: dv, tokens: n + 1, d: d, dv: dv, scale: scale, products: products)
                        }
                    }
                }
                for i in 0..<dv { out[h * dv + i] = Float(head.out[i]) }
                for t in 0...n { received[t] += head.weights[t] }
            }
            for (t, place) in rows.places.enumerated() {
                switch place.segment {
                case 0: fixed.score[g][place.slot] += received[t]
                case 1: high.score[g][place.slot] += received[t]
                default: low.score[g][place.slot] += received[t]
                }
            }
            newScores[g] = received[n]
        }
        return (out, newScores)
    }
}
