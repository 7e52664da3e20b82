import Foundation

/// A plan lowered to actions on tier arenas: exactly what the generated `Schedule.swift` does, as
/// data (`schedule.json`).
///
/// One arena per tier: the compute tier (tier 0) at its capacity with the plan's scratchpad
/// offsets; every other tier holds a static region per value that lives there (its home, a spill
/// slot or a staging slot), laid out in value order at the tier's alignment. Actions run in plan
/// order, slot by slot: staging hops, loads into tier 0, the slot's kernel, then copies out of
/// tier 0 (stores and spills) — the order the plan verifier assumes. Docs/runtime.md.
public struct ExecutionSchedule: Codable, Sendable, Equatable {
    /// The schema version this build reads and writes.
    public static let currentVersion = 3
    /// The calling convention of the generated `kvplan_step` (emitter and runtime must agree).
    public static let abi = 4

    /// A byte position in one tier's arena.
    public struct Location: Codable, Sendable, Equatable, Hashable {
        public var tier: Int
        public var offset: Int
        public init(tier: Int, offset: Int) {
            self.tier = tier
            self.offset = offset
        }
    }

    /// One tier's arena: its name and the bytes the runtime allocates for it.
    public struct Arena: Codable, Sendable, Equatable {
        public var name: String
        public var bytes: Int
        public init(name: String, bytes: Int) {
            self.name = name
            self.bytes = bytes
        }
    }

    /// A tensor's bytes at a fixed place for the whole run (weights, inputs, outputs).
    public struct Binding: Codable, Sendable, Equatable {
        public var tensor: String
        /// Storage format of the bytes (weights: f32, f16, bf16, q8_0 or q4_0; inputs and outputs f32).
        public var dtype: String
        public var location: Location
        public var bytes: Int
        /// The block of the tensor held there, when the plan keeps the tensor in parts (one binding per part).
        public var part: ValuePart?
        /// How the bytes are arranged when not row by row in `dtype`'s block order (KVQuant's
        /// WeightLayout: `q4_0x16` / `q8_0x16`, rows interleaved for the generated GEMV); nil: row by row.
        public var layout: String?
        public init(tensor: String, dtype: String = "f32", location: Location, bytes: Int, part: ValuePart? = nil, layout: String? = nil) {
            self.tensor = tensor
            self.dtype = dtype
            self.location = location
            self.bytes = bytes
            self.part = part
            self.layout = layout
        }

        /// What this binding holds of a 2-D tensor of `shape` as a matrix (rows, columns): the
        /// whole tensor, or its part; nil when the tensor is not 2-D or the part cuts a row.
        public func matrix(of shape: [Int]) -> (rows: Int, columns: Int)? {
            guard shape.count == 2 else { return nil }
            return part.map { $0.matrix(in: shape) } ?? (shape[0], shape[1])
        }
    }

    /// A block of one of an op's tensors that a kernel action read or wrote, and where it was then.
    public struct View: Codable, Sendable, Equatable {
        /// Operand index (reads), or result index (writes: the results, then decode attention's new K and V rows).
        public var index: Int
        public var location: Location
        /// The block (nil: the whole tensor).
        public var part: ValuePart?
        public init(index: Int, location: Location, part: ValuePart?) {
            self.index = index
            self.location = location
            self.part = part
        }
    }

    /// One step of the schedule.
    public struct Action: Codable, Sendable, Equatable {
        /// `copy` (a planned transfer), `gather` (a planned transfer of the rows `ids` selects),
        /// `kernel`, or `block` (a copy inside the compute tier assembling parts for a kernel
        /// into its staging area, or scattering a staged result into parts; on no link).
        public var kind: String
        /// The plan slot the action belongs to.
        public var slot: Int
        /// copy/gather: the plan value moved, the link index (into `links`), bytes, source and destination.
        public var value: Int?
        public var link: Int?
        public var bytes: Int?
        public var from: Location?
        public var to: Location?
        /// gather: where the row indices are (f32 holding exact integers) and the bytes of one row.
        public var ids: Location?
        public var rowBytes: Int?
        /// gather from a table the plan keeps in row ranges: each part's rows and home (then `from` is unused).
        public var parts: [View]?
        /// block: `rows` copies of `bytes` bytes, the source advancing by `fromStride` and the destination by `toStride`.
        public var rows: Int?
        public var fromStride: Int?
        public var toStride: Int?
        /// kernel: the tile of the op this call computes, how the op is split, and the block of
        /// its tensor each operand and result pointer holds (nil entries: the whole tensor);
        /// absent when the op is computed whole. Decode attention split by tokens passes the
        /// online-softmax state as a sixth operand and writes it (or, last, the output) as its first result.
        public var tile: Int?
        public var tiles: Int?
        public var scheme: String?
        public var operandParts: [ValuePart?]?
        public var resultParts: [ValuePart?]?
        /// kernel: which blocks of the op's tensors this call read and wrote, and where (for checking).
        public var reads: [View]?
        public var writes: [View]?
        /// kernel: the program op, where its operands are read and its results written (tier 0).
        public var op: Int?
        public var operands: [Location]?
        public var results: [Location]?

        /// A planned copy between tiers.
        public static func copy(slot: Int, value: Int, link: Int, bytes: Int, from: Location, to: Location) -> Action {
            Action(kind: "copy", slot: slot, value: value, link: link, bytes: bytes, from: from, to: to)
        }

        /// A planned copy of table rows selected by indices (`parts`: the table's row ranges, when it is kept in parts).
        public static func gather(slot: Int, value: Int, link: Int, bytes: Int, from: Location, to: Location, ids: Location, rowBytes: Int,
                                  parts: [View]? = nil) -> Action {
            var a = Action(kind: "gather", slot: slot, value: value, link: link, bytes: bytes, from: from, to: to, ids: ids, rowBytes: rowBytes)
            a.parts = parts
            return a
        }

        /// An op's kernel (or one tile of it), with the blocks it read and wrote (default: every operand and result whole, where passed).
        public static func kernel(slot: Int, op: Int, operands: [Location], results: [Location], reads: [View]? = nil, writes: [View]? = nil) -> Action {
            var a = Action(kind: "kernel", slot: slot, op: op, operands: operands, results: results)
            a.reads = reads ?? operands.enumerated().map { View(index: $0, location: $1, part: nil) }
            a.writes = writes ?? results.enumerated().map { View(index: $0, location: $1, part: nil) }
            return a
        }

        /// A strided copy inside the compute tier (staging for a kernel).
        public static func block(slot: Int, from: Location, to: Location, bytes: Int, rows: Int, fromStride: Int, toStride: Int) -> Action {
            var a = Action(kind: "block", slot: slot, bytes: bytes, from: from, to: to)
            (a.rows, a.fromStride, a.toStride) = (rows, fromStride, toStride)
            return a
        }

        init(kind: String, slot: Int, value: Int? = nil, link: Int? = nil, bytes: Int? = nil, from: Location? = nil, to: Location? = nil,
             ids: Location? = nil, rowBytes: Int? = nil, op: Int? = nil, operands: [Location]? = nil, results: [Location]? = nil) {
            self.kind = kind
            self.slot = slot
            self.value = value
            self.link = link
            self.bytes = bytes
            self.from = from
            self.to = to
            self.ids = ids
            self.rowBytes = rowBytes
            self.op = op
            self.operands = operands
            self.results = results
        }
    }

    /// One decode-attention layer's cache: where its home regions are and how it is held.
    public struct KVCache: Codable, Sendable, Equatable {
        /// The attention op (program index).
        public var op: Int
        /// Home of the key and value caches, and of the new token's rows the attention writes.
        public var keys: Location
        public var values: Location
        public var newKeys: Location
        public var newValues: Location
        /// Bytes of the key and value caches (all sequences), as planned.
        public var keyBytes: Int
        public var valueBytes: Int
        public var batch: Int
        /// Tokens the cache holds per sequence, and channels per token (KV heads × head dim).
        public var capacity: Int
        public var channels: Int
        /// KV heads (channels = kvHeads × head dim); a packed cache selects tokens per KV head.
        public var kvHeads: Int
        /// The packed layout (nil: a full-precision f32 cache `[batch, capacity, channels]`).
        public var layout: KVLayerLayout?
        /// An f32 cache the plan keeps in token ranges: the first token of each part and one past
        /// the last (`tokenCuts`), and each part's home (`[batch, tokens, channels]` there); then
        /// `keys` and `values` are the first part's.
        public var tokenCuts: [Int]?
        public var keyParts: [Location]?
        public var valueParts: [Location]?
        public init(op: Int, keys: Location, values: Location, keyBytes: Int, valueBytes: Int, newKeys: Location, newValues: Location,
                    batch: Int, capacity: Int, channels: Int, kvHeads: Int, layout: KVLayerLayout?) {
            self.op = op
            self.keys = keys
            self.values = values
            self.keyBytes = keyBytes
            self.valueBytes = valueBytes
            self.newKeys = newKeys
            self.newValues = newValues
            self.batch = batch
            self.capacity = capacity
            self.channels = channels
            self.kvHeads = kvHeads
            self.layout = layout
        }
        /// Byte offsets of the state block a generated attention kernel shares with the runtime's
        /// cache manager, each array [batch][kvHeads][…]: Int32 occupancy per slot (token id, -1
        /// empty; for an f32 cache one length per sequence, at [b][0][0]), f32 attention received
        /// per slot (summed over the KV head's query heads), f32 attention of the new token.
        public var stateLayout: (occupancy: Int, received: Int, newScore: Int, total: Int) {
            let n = batch * kvHeads * slots * 4
            return (0, n, 2 * n, 2 * n + batch * kvHeads * 4)
        }
        /// Slots per sequence the generated kernel scans (the layout's tokens, or the capacity).
        public var slots: Int {
            guard let l = layout else { return capacity }
            return l.sinkTokens + l.windowTokens + l.highTokens + (l.lowBits > 0 ? l.lowTokens : 0)
        }
    }

    public var version: Int
    public var model: String
    public var target: String
    public var arenas: [Arena]
    /// Link names (`from->to`) in the order the runtime counts bytes.
    public var links: [String]
    /// Bytes the plan moves over each link per step (same order as `links`).
    public var linkBytes: [Int]
    public var weights: [Binding]
    public var inputs: [Binding]
    public var outputs: [Binding]
    public var kv: [KVCache]
    public var actions: [Action]
    /// Bytes of tier 0's arena past the tier's capacity where kernels read parts assembled by
    /// `block` actions (a tensor the plan keeps in parts, read or written whole); 0 when none.
    public var stagingBytes: Int

    public init(model: String, target: String, arenas: [Arena], links: [String], linkBytes: [Int], weights: [Binding], inputs: [Binding],
                outputs: [Binding], kv: [KVCache], actions: [Action], stagingBytes: Int = 0) {
        version = Self.currentVersion
        self.stagingBytes = stagingBytes
        self.model = model
        self.target = target
        self.arenas = arenas
        self.links = links
        self.linkBytes = linkBytes
        self.weights = weights
        self.inputs = inputs
        self.outputs = outputs
        self.kv = kv
        self.actions = actions
    }

    /// Deterministic JSON (sorted keys, pretty-printed).
    public func encoded() throws -> Data {
        try ArtifactJSON.encode(self)
    }

    /// Every location inside its arena, every index in range, the version known.
    public func validate(against program: ModelProgram) throws(ArtifactError) {
        guard version == Self.currentVersion else { throw ArtifactError("schedule.json: version \(version), this build reads \(Self.currentVersion)") }
        guard linkBytes.count == links.count else { throw ArtifactError("schedule.json: \(links.count) links but \(linkBytes.count) link totals") }
        func check(_ l: Location, _ bytes: Int, _ what: @autoclosure () -> String) throws(ArtifactError) {
            guard arenas.indices.contains(l.tier), l.offset >= 0, bytes >= 0, l.offset + bytes <= arenas[l.tier].bytes else {
                throw ArtifactError("schedule.json: \(what()) at tier \(l.tier) offset \(l.offset) (\(bytes) B) is outside the arenas")
            }
        }
        for b in weights + inputs + outputs { try check(b.location, b.bytes, "'\(b.tensor)'") }
        for b in weights {
            guard let layout = b.layout else { continue }
            let shape = program.tensors.first { $0.name == b.tensor }?.shape ?? []
            guard ["q4_0x16", "q8_0x16"].contains(layout), layout.hasPrefix(b.dtype), let (rows, columns) = b.matrix(of: shape), rows % 16 == 0, columns % 32 == 0 else {
                let block = b.part.map { " part \($0.dim):\($0.start)..<\($0.end)" } ?? ""
                throw ArtifactError("schedule.json: weight '\(b.tensor)'\(block) (\(b.dtype) \(shape)) in layout '\(layout)'; known: q4_0x16 and q8_0x16, for a q4_0 or q8_0 matrix (or part) of rows in groups of 16")
            }
        }
        for (i, a) in actions.enumerated() {
            switch a.kind {
            case "copy", "gather":
                guard let from = a.from, let to = a.to, let bytes = a.bytes, let link = a.link, links.indices.contains(link) else {
                    throw ArtifactError("schedule.json: actions[\(i)] (\(a.kind)) lacks from/to/bytes/link")
                }
                try check(to, bytes, "actions[\(i)] destination")
                if a.kind == "copy" { try check(from, bytes, "actions[\(i)] source") }
                for p in a.parts ?? [] { try check(p.location, 0, "actions[\(i)] table part") }
            case "block":
                guard let from = a.from, let to = a.to, let bytes = a.bytes, let rows = a.rows, let fs = a.fromStride, let ts = a.toStride,
                      rows >= 1, fs >= 0, ts >= 0 else {
                    throw ArtifactError("schedule.json: actions[\(i)] (block) lacks from/to/bytes/rows/strides")
                }
                try check(from, (rows - 1) * fs + bytes, "actions[\(i)] source")
                try check(to, (rows - 1) * ts + bytes, "actions[\(i)] destination")
            case "kernel":
                guard let op = a.op, program.ops.indices.contains(op), let operands = a.operands, let results = a.results else {
                    throw ArtifactError("schedule.json: actions[\(i)] (kernel) lacks a valid op/operands/results")
                }
                for l in operands + results + (a.reads ?? []).map(\.location) + (a.writes ?? []).map(\.location) {
                    try check(l, 0, "actions[\(i)] '\(program.ops[op].name)'")
                }
            default:
                throw ArtifactError("schedule.json: actions[\(i)] has unknown kind '\(a.kind)'")
            }
        }
        for c in kv {
            guard program.ops.indices.contains(c.op) else { throw ArtifactError("schedule.json: a KV cache names op \(c.op); the program has \(program.ops.count)") }
            if let cuts = c.tokenCuts, let keys = c.keyParts, let values = c.valueParts {
                guard c.layout == nil, cuts.count == keys.count + 1, keys.count == values.count, cuts.first == 0, cuts.last == c.capacity,
                      zip(cuts, cuts.dropFirst()).allSatisfy({ $0 < $1 }) else {
                    throw ArtifactError("schedule.json: the cache parts of '\(program.ops[c.op].name)' do not cover its \(c.capacity) tokens")
                }
                for (j, (k, v)) in zip(keys, values).enumerated() {
                    let bytes = c.batch * (cuts[j + 1] - cuts[j]) * c.channels * 4
                    try check(k, bytes, "key cache part \(j) of '\(program.ops[c.op].name)'")
                    try check(v, bytes, "value cache part \(j) of '\(program.ops[c.op].name)'")
                }
            } else {
                try check(c.keys, c.keyBytes, "the key cache of '\(program.ops[c.op].name)'")
                try check(c.values, c.valueBytes, "the value cache of '\(program.ops[c.op].name)'")
            }
            try check(c.newKeys, c.batch * c.channels * 4, "the new keys of '\(program.ops[c.op].name)'")
            try check(c.newValues, c.batch * c.channels * 4, "the new values of '\(program.ops[c.op].name)'")
        }
    }
}
