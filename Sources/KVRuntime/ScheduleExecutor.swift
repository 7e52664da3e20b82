import Foundation
import KVArtifact
import KVQuant

// Runs an artifact's generated schedule: one arena per tier (tier 0 at its capacity, the others
// at the bytes the schedule lays out), weights copied into their homes once, inputs written to
// their homes before each step, the compiled step function performing every planned copy (counted
// per link) and kernel, then the KV cache manager appending each layer's new token to the cache
// home: in place in the packed layout (PackedKVCache over the arena bytes — the bytes held are the
// plan's, nothing else) or as the next row of an f32 cache. Docs/runtime.md.

/// A compiled schedule with its tier arenas and KV caches, one decode step at a time.
public final class ScheduleExecutor {
    public let program: ModelProgram
    public let schedule: ExecutionSchedule
    /// The compiled library the step function lives in (nil when the code was linked in).
    public let library: KernelLibrary?
    let stepFunction: KernelLibrary.Step
    /// One arena per tier (64-byte aligned, zeroed).
    let arenas: [UnsafeMutableRawBufferPointer]
    /// Per KV layer: the generated kernel's state (occupancy, attention received, new token's).
    let states: [UnsafeMutableRawBufferPointer]
    /// Per KV layer and sequence: the packed cache over its home bytes (empty for f32 caches).
    public private(set) var packed: [[PackedKVCache]] = []
    /// Per KV layer and sequence: tokens held by an f32 cache.
    private var lengths: [[Int]] = []
    /// Bytes copied over each link (schedule.links order) since the start.
    public private(set) var linkBytes: [Int]
    /// Steps run since the start.
    public private(set) var steps = 0

    /// Loads `kernels` + `step` (compiling them when not cached) for `schedule` over `program`,
    /// with `weights` (f32 by tensor name) stored in their homes in each weight's dtype (quantised at load); large kernels split over `threads`.
    public convenience init(program: ModelProgram, schedule: ExecutionSchedule, kernels: String, step: String,
                            weights: [String: [Float]], threads: Int = 1) throws(RuntimeError) {
        let library = try KernelLibrary(kernels: kernels, schedule: step)
        library.setThreads(threads)
        try self.init(program: program, schedule: schedule, step: library.step, library: library, weights: weights)
    }

    /// Runs `schedule` with a step function linked into the caller (Generated/ sources compiled
    /// as part of a target) or from `library`.
    public init(program: ModelProgram, schedule: ExecutionSchedule, step: KernelLibrary.Step, library: KernelLibrary? = nil,
                weights: [String: [Float]]) throws(RuntimeError) {
        do { try program.validate(); try schedule.validate(against: program) } catch { throw RuntimeError(error.message) }
        self.program = program
        self.schedule = schedule
        self.library = library
        stepFunction = step
        arenas = schedule.arenas.map { arena in
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(64, arena.bytes), alignment: 4096)
            memory.initializeMemory(as: UInt8.self, repeating: 0)
            return memory
        }
        states = schedule.kv.map { cache in
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: cache.stateLayout.total, alignment: 64)
            memory.initializeMemory(as: UInt8.self, repeating: 0)
            return memory
        }
        linkBytes = Array(repeating: 0, count: schedule.links.count)
        let tensors = Dictionary(program.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for binding in schedule.weights {
            guard let w = weights[binding.tensor], let t = tensors[binding.tensor] else { throw RuntimeError("no weights for '\(binding.tensor)'") }
            guard w.count == t.elementCount else {
                throw RuntimeError("weights for '\(binding.tensor)' have \(w.count) elements; its shape \(t.shape) has \(t.elementCount)")
            }
            // Quantisation at load: the bytes of the program's storage format for this weight (or
            // for its block, when the plan keeps it in parts).
            let elements = binding.part.map { $0.extract(from: w, shape: t.shape) } ?? w
            guard let format = WeightFormat(rawValue: t.dtype), var stored = format.encode(elements), stored.count == binding.bytes else {
                throw RuntimeError("'\(binding.tensor)' is \(t.dtype) in \(binding.bytes) B; the runtime stores weights as \(WeightFormat.allCases.map(\.rawValue).joined(separator: ", ")) in whole blocks")
            }
            if let name = binding.layout {
                // Rows interleaved for the generated GEMV: the whole weight, or the part held here
                // as a matrix of its own (schedule.validate checked the shape).
                guard let layout = WeightLayout(rawValue: name), let (rows, columns) = binding.matrix(of: t.shape),
                      layout.applies(format: format, rows: rows, columns: columns) else {
                    throw RuntimeError("'\(binding.tensor)' is stored in layout '\(name)', which this runtime does not arrange \(t.dtype) \(t.shape) in")
                }
                stored = layout.arrange(stored, rows: rows, columns: columns)
            }
            let base = arenas[binding.location.tier].baseAddress! + binding.location.offset
            stored.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        try resetCaches()
    }

    deinit {
        for a in arenas { a.deallocate() }
        for s in states { s.deallocate() }
    }

    /// Empties every KV cache (a new sequence); weights stay.
    public func reset() throws(RuntimeError) { try resetCaches() }

    private func resetCaches() throws(RuntimeError) {
        packed = []
        lengths = []
        for (n, cache) in schedule.kv.enumerated() {
            states[n].initializeMemory(as: UInt8.self, repeating: 0)
            guard let layout = cache.layout else {
                lengths.append(Array(repeating: 0, count: cache.batch))
                continue
            }
            let per = PackedKVCache.regionBytes(layout: layout, channels: cache.channels)
            guard per.keys * cache.batch == cache.keyBytes, per.values * cache.batch == cache.valueBytes else {
                throw RuntimeError("layer \(layout.layer): the plan gives its cache \(cache.keyBytes)+\(cache.valueBytes) B; the packed layout needs \(per.keys * cache.batch)+\(per.values * cache.batch) B")
            }
            let keys = region(cache.keys, cache.keyBytes), values = region(cache.values, cache.valueBytes)
            packed.append((0..<cache.batch).map { b in
                PackedKVCache(layout: layout, channels: cache.channels, kvHeads: cache.kvHeads,
                              keys: UnsafeMutableRawBufferPointer(rebasing: keys[b * per.keys..<(b + 1) * per.keys]),
                              values: UnsafeMutableRawBufferPointer(rebasing: values[b * per.values..<(b + 1) * per.values]))
            })
            publishOccupancy(n)
        }
    }

    private func region(_ l: ExecutionSchedule.Location, _ bytes: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: arenas[l.tier][l.offset..<l.offset + bytes])
    }

    /// Writes f32 values at a location.
    func write(_ values: [Float], at l: ExecutionSchedule.Location) {
        values.withUnsafeBytes { region(l, $0.count).copyMemory(from: $0) }
    }

    /// `count` f32 values at a location.
    public func read(_ l: ExecutionSchedule.Location, count: Int) -> [Float] {
        let r = region(l, count * 4)
        return (0..<count).map { r.load(fromByteOffset: $0 * 4, as: Float.self) }
    }

    /// Sets an input tensor (by name) for the next step (each part, when the plan keeps it in parts).
    public func setInput(_ name: String, _ values: [Float]) throws(RuntimeError) {
        let bindings = schedule.inputs.filter { $0.tensor == name }
        guard !bindings.isEmpty, let t = program.tensors.first(where: { $0.name == name }) else { throw RuntimeError("the schedule has no input '\(name)'") }
        guard values.count == t.elementCount else { throw RuntimeError("input '\(name)' takes \(t.elementCount) values, got \(values.count)") }
        for b in bindings { write(b.part.map { $0.extract(from: values, shape: t.shape) } ?? values, at: b.location) }
    }

    /// An output tensor (by name) after the last step (assembled when the plan keeps it in parts).
    public func output(_ name: String) throws(RuntimeError) -> [Float] {
        let bindings = schedule.outputs.filter { $0.tensor == name }
        guard let first = bindings.first else { throw RuntimeError("the schedule has no output '\(name)'") }
        guard bindings.count > 1 || first.part != nil, let t = program.tensors.first(where: { $0.name == name }) else {
            return read(first.location, count: first.bytes / 4)
        }
        var whole = [Float](repeating: 0, count: t.elementCount)
        for b in bindings { b.part!.insert(read(b.location, count: b.bytes / 4), into: &whole, shape: t.shape) }
        return whole
    }

    /// Runs one decode step; `observe` sees the index (into `schedule.actions`) of each kernel
    /// action after it ran (then `read` what it wrote; OpCapture assembles whole ops).
    public func step(observe: ((Int) -> Void)? = nil) throws(RuntimeError) {
        // An f32 cache appends one row per step; a packed one evicts instead of filling up.
        for (n, cache) in schedule.kv.enumerated() where cache.layout == nil && (lengths[n].max() ?? 0) >= cache.capacity {
            throw RuntimeError("'\(program.ops[cache.op].name)': the KV cache holds \(cache.capacity) tokens and is full")
        }
        var bases = arenas.map { $0.baseAddress! }
        var stateBases = states.map { $0.baseAddress! }
        if stateBases.isEmpty { stateBases = [bases[0]] }  // no attention layers: any valid pointer (never read)
        let box = observe.map { Observer($0) }
        let context = box.map { Unmanaged.passUnretained($0).toOpaque() }
        let trampoline: (@convention(c) (UnsafeMutableRawPointer?, Int) -> Void)? = box == nil ? nil : { context, op in
            Unmanaged<Observer>.fromOpaque(context!).takeUnretainedValue().body(op)
        }
        linkBytes.withUnsafeMutableBufferPointer { links in
            bases.withUnsafeMutableBufferPointer { tiers in
                stateBases.withUnsafeMutableBufferPointer { kv in
                    stepFunction(tiers.baseAddress!, kv.baseAddress!, links.baseAddress!, trampoline, context)
                }
            }
        }
        withExtendedLifetime(box) {}
        for (n, cache) in schedule.kv.enumerated() { appendNewTokens(n, cache) }
        steps += 1
    }

    /// The cache manager: appends each sequence's new token (rows the step wrote to their home).
    private func appendNewTokens(_ n: Int, _ cache: ExecutionSchedule.KVCache) {
        let c = cache.channels
        let newKeys = read(cache.newKeys, count: cache.batch * c), newValues = read(cache.newValues, count: cache.batch * c)
        let state = cache.stateLayout
        guard cache.layout != nil else {
            for b in 0..<cache.batch {
                // The row's place: in the whole cache, or in the token range that holds it.
                var (keys, values, first, tokens) = (cache.keys, cache.values, 0, cache.capacity)
                if let cuts = cache.tokenCuts, let p = cuts.lastIndex(where: { $0 <= lengths[n][b] }), p < cuts.count - 1 {
                    (keys, values, first, tokens) = (cache.keyParts![p], cache.valueParts![p], cuts[p], cuts[p + 1] - cuts[p])
                }
                let row = (b * tokens + lengths[n][b] - first) * c * 4
                write(Array(newKeys[b * c..<(b + 1) * c]), at: .init(tier: keys.tier, offset: keys.offset + row))
                write(Array(newValues[b * c..<(b + 1) * c]), at: .init(tier: values.tier, offset: values.offset + row))
                lengths[n][b] += 1
            }
            publishOccupancy(n)
            return
        }
        let s = states[n]
        for b in 0..<cache.batch {
            let perSequence = cache.kvHeads * cache.slots
            let received = UnsafeBufferPointer(start: (s.baseAddress! + state.received).assumingMemoryBound(to: Float.self) + b * perSequence, count: perSequence)
            packed[n][b].addReceived(received)
            let scores = (0..<cache.kvHeads).map { g in Double(s.load(fromByteOffset: state.newScore + 4 * (b * cache.kvHeads + g), as: Float.self)) }
            packed[n][b].append(key: Array(newKeys[b * c..<(b + 1) * c]), value: Array(newValues[b * c..<(b + 1) * c]), scores: scores)
        }
        publishOccupancy(n)
    }

    /// Writes the occupancy the generated kernel reads: token id per slot (packed) or tokens held (f32).
    private func publishOccupancy(_ n: Int) {
        let cache = schedule.kv[n]
        let occupancy = states[n].baseAddress!.assumingMemoryBound(to: Int32.self)
        if cache.layout == nil {
            for b in 0..<cache.batch { occupancy[b * cache.kvHeads * cache.slots] = Int32(lengths[n][b]) }
            return
        }
        for b in 0..<cache.batch {
            for g in 0..<cache.kvHeads {
                packed[n][b].writeSlotTokens(head: g, to: occupancy + (b * cache.kvHeads + g) * cache.slots)
            }
        }
    }

    /// KV bytes held per layer (all sequences): the packed regions, or the f32 cache.
    public var kvBytesInUse: [Int] {
        schedule.kv.enumerated().map { n, cache in
            cache.layout == nil ? cache.keyBytes + cache.valueBytes : packed[n].reduce(0) { $0 + $1.bytes }
        }
    }

    /// Tokens held per layer (summed over sequences; a packed cache counts per KV head — every head holds as many).
    public var kvTokensHeld: [Int] {
        schedule.kv.indices.map { n in schedule.kv[n].layout == nil ? lengths[n].reduce(0, +) : packed[n].reduce(0) { $0 + $1.tokens } }
    }

    final class Observer {
        let body: (Int) -> Void
        init(_ body: @escaping (Int) -> Void) { self.body = body }
    }
}

