import KVArtifact
import KVQuant

// Decode attention kernels, specialised per layer: heads, GQA grouping, head dims, scale, batch
// and — for a packed cache — every segment's slot count, bit widths and byte offset are constants.
//
// Per sequence and KV head g (each KV head has its own slot table: the cache manager selects
// tokens per KV head), the kernel computes the logits of g's query heads against every slot,
// a masked softmax (slots whose occupancy is -1 weigh 0), the weighted values, and the attention
// each slot received summed over g's query heads (H2O scores). Softmax takes two passes over a
// logit buffer rather than running online: the manager needs every slot's normalised weight, so
// the logits are kept anyway. The new token takes part at full precision and its rows are
// written to the planned place for the manager to append.
//
// Quantised segments are read by blocked kernels (AttentionHelpers): keys 16 tokens × up to 4
// heads of accumulators per pass over a head's channels, values 16 channels × up to 4 heads per
// pass over the tokens (32 × 2 at 2 bits); the dequantisation is folded into per-channel query scales (keys: Σ_c
// (q_c·s_c)·code_ct + Σ_c q_c·z_c) and per-token weights (values: Σ_t (w_t·s_t)·code_t +
// Σ_t w_t·z_t). Partial key groups (a segment's last, when its size is not a multiple of 32) and
// value groups split between heads (head_dim % 32 ≠ 0) take the scalar path.

extension SwiftEmitter {
    /// Parameters of every attention kernel: q, k, v, key cache, value cache, y, new keys, new values, state.
    static let attentionSignature = "_ q: UnsafeMutablePointer<Float>, _ k: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>, "
        + "_ kc: UnsafeMutablePointer<Float>, _ vc: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, "
        + "_ kn: UnsafeMutablePointer<Float>, _ vn: UnsafeMutablePointer<Float>, _ state: UnsafeMutableRawPointer"

    /// A segment of a packed layout as the kernel addresses it.
    struct KVSegment {
        var first: Int, count: Int, keys: Int, values: Int, keyBits: Int, valueBits: Int
    }

    func attentionKernel(_ op: ModelProgram.Op, cache: ExecutionSchedule.KVCache) -> (String, String) {
        let heads = op.int("heads") ?? 1
        let kvHeads = op.int("kv_heads") ?? heads
        let d = program.tensors[op.operands[0]].shape.last! / heads
        let c = cache.channels, dv = c / kvHeads, batch = cache.batch, slots = cache.slots
        let scale = Float(op.double("scale") ?? 1 / Double(d).squareRoot())
        let groupSize = heads / kvHeads
        let state = cache.stateLayout
        // A head's logits (its slots, then the new token) start on a 64-byte line: the packed
        // kernels read and write them 16 at a time, and an odd stride (slots + 1) split three of
        // every four heads' vectors across two lines.
        let stride = cache.layout == nil ? slots + 1 : (slots + 16) / 16 * 16
        var body = """
            let occupancy = (state + \(state.occupancy)).assumingMemoryBound(to: Int32.self)
            let received = (state + \(state.received)).assumingMemoryBound(to: Float.self)
            let newScore = (state + \(state.newScore)).assumingMemoryBound(to: Float.self)
            let logitBytes = UnsafeMutableRawPointer.allocate(byteCount: \(heads * stride * 4), alignment: 64)
            defer { logitBytes.deallocate() }
            let logits = logitBytes.bindMemory(to: Float.self, capacity: \(heads * stride))
            for b in 0..<\(batch) {
                (kn + b &* \(c)).update(from: k + b &* \(c), count: \(c))
                (vn + b &* \(c)).update(from: v + b &* \(c), count: \(c))

        """
        guard let l = cache.layout else {
            body += """
                    let n = Int(occupancy[b &* \(kvHeads * slots)])
                    for h in 0..<\(heads) {
                        let g = h / \(groupSize)
                        let qh = q + (b &* \(heads) &+ h) &* \(d)
                        let yh = y + (b &* \(heads) &+ h) &* \(dv)
                        var m = -Float.infinity
                        for t in 0...n {
                            let row = t < n ? kc + ((b &* \(cache.capacity) &+ t) &* \(c) &+ g &* \(d)) : k + (b &* \(c) &+ g &* \(d))
                            let s = dot(qh, row, \(d)) * \(scale)
                            logits[t] = s
                            m = max(m, s)
                        }
                        var total: Float = 0
                        for t in 0...n { logits[t] = exp(logits[t] - m); total += logits[t] }
                        for i in 0..<\(dv) { yh[i] = 0 }
                        for t in 0...n {
                            let w = logits[t] / total
                            let row = t < n ? vc + ((b &* \(cache.capacity) &+ t) &* \(c) &+ g &* \(dv)) : v + (b &* \(c) &+ g &* \(dv))
                            for i in 0..<\(dv) { yh[i] += w * row[i] }
                        }
                    }
                }

            """
            return (Self.attentionSignature, body)
        }
        // Segments: fixed (sinks + window, fp16), high, low — each with its slot range and byte offsets.
        var segments: [KVSegment] = []
        let fixed = l.sinkTokens + l.windowTokens, low = l.lowBits > 0 ? l.lowTokens : 0
        var (slot, keys, values) = (0, 0, 0)
        for (count, kb, vb) in [(fixed, 16, 16), (l.highTokens, l.keyBitsHigh, l.valueBitsHigh), (low, l.lowBits, l.lowBits)] {
            if count > 0 { segments.append(KVSegment(first: slot, count: count, keys: keys, values: values, keyBits: kb, valueBits: vb)) }
            slot += count
            keys += KVSegmentLayout(kind: .keys, tokens: count, channels: c, bits: KVBits(rawValue: kb) ?? .b16).bytes
            values += KVSegmentLayout(kind: .values, tokens: count, channels: c, bits: KVBits(rawValue: vb) ?? .b16).bytes
        }
        // KV heads are independent (own slots, logits, outputs and scores), so they are split over
        // threads; each part has its own scratch.
        body += """
                let keys = UnsafeRawPointer(kc) + b &* \(cache.keyBytes / batch), values = UnsafeRawPointer(vc) + b &* \(cache.valueBytes / batch)
                parallelRows(\(kvHeads), work: \(heads * slots * d / 2)) { gLo, gHi in
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: \(256 + 2 * groupSize + groupSize * max(d, 256)))
                    defer { scratch.deallocate() }
                    let codes = scratch, bias = scratch + 256, weights = scratch + \(256 + groupSize), scaled = scratch + \(256 + 2 * groupSize)
                    _ = (codes, bias, weights, scaled)

        """
        if segments.contains(where: { Self.integerKeys($0, d: d) }) {
            // The scaled query of a KV head's group rounded to int8 per 32 channels (KeyProductRounding).
            let n = groupSize * d, blocks = n / 32
            body += """
                        let rounding = UnsafeMutableRawPointer.allocate(byteCount: \(n * 5 + blocks * 40), alignment: 32)
                        defer { rounding.deallocate() }
                        let qrow = QuantisedRow(values: rounding.bindMemory(to: Float.self, capacity: \(n)),
                                                offsets: (rounding + \(n * 4)).bindMemory(to: Int32.self, capacity: \(blocks * 8)),
                                                scales: (rounding + \(n * 4 + blocks * 32)).bindMemory(to: Float.self, capacity: \(blocks)),
                                                codes: (rounding + \(n * 4 + blocks * 36)).bindMemory(to: Int8.self, capacity: \(n)),
                                                sums: (rounding + \(n * 5 + blocks * 36)).bindMemory(to: Int32.self, capacity: \(blocks)))

            """
        }
        if segments.contains(where: { Self.integerValues($0, dv: dv) }) {
            // Each head's weights of a 256-token block rounded to int16 per 32 tokens, and the block scales.
            body += """
                        let weightRounding = UnsafeMutableRawPointer.allocate(byteCount: \(groupSize * 256 * 2 + groupSize * 8 * 4), alignment: 64)
                        defer { weightRounding.deallocate() }
                        let weightCodes = weightRounding.bindMemory(to: Int16.self, capacity: \(groupSize * 256))
                        let weightScales = (weightRounding + \(groupSize * 256 * 2)).bindMemory(to: Float.self, capacity: \(groupSize * 8))

            """
        }
        // Token-major value segments (TokenMajorWeights, AVX-512 VNNI): one tile's int16 weights of
        // all four channel groups, their block scales and biases, the factors 1/Z_h folded into
        // them (or 1 when the softmax normalises: some segment takes another path), a staging block.
        let tokenMajor = segments.contains { Self.tokenMajorValues($0, heads: groupSize, dv: dv) }
        let folded = tokenMajor && segments.allSatisfy { Self.tokenMajorValues($0, heads: groupSize, dv: dv) || $0.valueBits == 16 }
        if tokenMajor {
            body += """
                        let tokenWeights = UnsafeMutableRawPointer.allocate(byteCount: 8192 + 512 + 64 + 64 + 2304, alignment: 64)
                        defer { tokenWeights.deallocate() }
                        let tileCodes = tokenWeights.bindMemory(to: Int16.self, capacity: 4096)
                        let tileScales = (tokenWeights + 8192).bindMemory(to: Float.self, capacity: 128)
                        let tileBias = (tokenWeights + 8704).bindMemory(to: Float.self, capacity: 16)
                        let weightFactors = (tokenWeights + 8768).bindMemory(to: Float.self, capacity: 16)
                        let stage = (tokenWeights + 8832).bindMemory(to: Float.self, capacity: 576)
                        for h in 0..<16 { weightFactors[h] = 1 }

            """
        }
        // The phases — keys, softmax, values — run one KV head at a time, so the head's logits
        // stay in L2 from the key products to the value products (run phase by phase over every
        // head, 4 MiB of logits at 32K tokens went out to L3/DRAM and back three times): the
        // phases' code is written for head g and wrapped in one loop over the part's KV heads
        // (`headLoop`); quantised value rows are head-major, so a head's are contiguous.
        var phases = ""
        for s in segments { phases += keyLogits(s, heads: groupSize, channels: c, d: d, scale: scale, stride: stride) }
        // Folded: the softmax leaves exp(l − m) and 1/Z to prepareWeightsH4 (TokenMajorWeights).
        let softmaxCall = "slotSoftmaxH\(groupSize)(lg, stride: \(stride), occ, \(slots), weights, received + (b &* \(kvHeads) &+ g) &* \(slots)"
        let softmax = folded
            ? "#if KVPLAN_AVX512VNNI\n            \(softmaxCall), inverses: weightFactors)\n#else\n            \(softmaxCall))\n#endif\n"
            : "            \(softmaxCall))\n"
        phases += groupSize <= 4 ? Self.indented("""
                    let kNew = k + (b &* \(c) &+ g &* \(d)), vNew = v + (b &* \(c) &+ g &* \(dv))
                    for h in 0..<\(groupSize) { weights[h] = dot(qg + h &* \(d), kNew, \(d)) * \(scale) }
        \(softmax)            var newWeight: Float = 0
                    for h in 0..<\(groupSize) {
                        let wNew = weights[h], yh = yg + h &* \(dv)
                        for i in 0..<\(dv) { yh[i] = wNew * vNew[i] }
                        newWeight += wNew
                    }
                    newScore[b &* \(kvHeads) &+ g] = newWeight

        """, 0) : Self.indented("""
                    let kNew = k + (b &* \(c) &+ g &* \(d)), vNew = v + (b &* \(c) &+ g &* \(dv))
                    var newWeight: Float = 0
                    for h in 0..<\(groupSize) {
                        let wNew = slotSoftmax(lg + h &* \(stride), occ, \(slots), newLogit: dot(qg + h &* \(d), kNew, \(d)) * \(scale))
                        let yh = yg + h &* \(dv)
                        for i in 0..<\(dv) { yh[i] = wNew * vNew[i] }
                        newWeight += wNew
                    }
                    newScore[b &* \(kvHeads) &+ g] = newWeight
                    let rec = received + (b &* \(kvHeads) &+ g) &* \(slots)
                    for s in 0..<\(slots) {
                        var r: Float = 0
                        for h in 0..<\(groupSize) { r += lg[h &* \(stride) &+ s] }
                        rec[s] = r
                    }

        """, 0)
        for s in segments {
            let headMajor = valueAccumulation(s, heads: groupSize, channels: c, dv: dv, stride: stride)
            if folded && s.valueBits == 16 {
                // fp16 rows next to folded token-major segments: the weights normalised here, and
                // the attention these slots received summed as the softmax would have.
                let rec = "received + ((b &* \(kvHeads) &+ g) &* \(slots) &+ \(s.first))"
                phases += "#if KVPLAN_AVX512VNNI\n" + halfValueAccumulation(s, heads: groupSize, channels: c, dv: dv, stride: stride, received: rec) + "#else\n" + headMajor + "#endif\n"
                continue
            }
            guard Self.tokenMajorValues(s, heads: groupSize, dv: dv) else { phases += headMajor; continue }
            let received = folded ? "received + ((b &* \(kvHeads) &+ g) &* \(slots) &+ \(s.first) &+ t0)" : "nil"
            phases += "#if KVPLAN_AVX512VNNI\n" + tokenMajorValueAccumulation(s, stride: stride, received: received) + "#else\n" + headMajor + "#endif\n"
        }
        phases = Self.headLoop(phases, kvHeads: kvHeads, heads: heads, groupSize: groupSize, d: d, dv: dv, slots: slots, stride: stride)
        body += Self.indented(phases, 1)
        body += "        }\n    }\n"
        return (Self.attentionSignature, body)
    }

    /// `code` in a loop over the part's KV heads g, with g's occupancy `occ`, queries `qg`,
    /// outputs `yg` and logits `lg` (h·stride + slot) in scope.
    static func headLoop(_ code: String, kvHeads: Int, heads: Int, groupSize: Int, d: Int, dv: Int, slots: Int, stride: Int) -> String {
        """
                for g in gLo..<gHi {
                    let occ = occupancy + (b &* \(kvHeads) &+ g) &* \(slots), lg = logits + g &* \(groupSize * stride)
                    let qg = q + (b &* \(heads) &+ g &* \(groupSize)) &* \(d), yg = y + (b &* \(heads) &+ g &* \(groupSize)) &* \(dv)
                    _ = (occ, lg, qg, yg)

        """ + code + "        }\n"
    }

    /// `code` with each non-empty line indented by `levels` × 4 spaces.
    static func indented(_ code: String, _ levels: Int) -> String {
        let pad = String(repeating: "    ", count: levels)
        return code.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : pad + $0 }.joined(separator: "\n")
    }

    /// Code filling `lg[h·stride + slot]` (h < heads) with the scaled logits of segment `s`.
    private func keyLogits(_ s: KVSegment, heads: Int, channels c: Int, d: Int, scale: Float, stride: Int) -> String {
        if s.keyBits == 16 {
            return Self.indented("            for h in 0..<\(heads) { halfKeyLogits(qg + h &* \(d), keys + \(s.keys), tokens: \(s.count), channels: \(c), first: g &* \(d), d: \(d), scale: \(scale), lg + (h &* \(stride) &+ \(s.first))) }\n", 0)
        }
        let full = s.count / 32, rest = s.count % 32
        let rowBytes = 4 + 32 * s.keyBits / 8
        // Quantised keys are head-major (KVSegmentLayout): KV head g's channel rows of every group
        // of the segment are contiguous, `headStride` apart.
        let headStride = KVSegmentLayout(kind: .keys, tokens: s.count, channels: c, bits: KVBits(rawValue: s.keyBits) ?? .b16).bytes / (c / d)
        // Each full group first prefetches the same KV head's rows of the next two groups into L1
        // (contiguous: keys are head-major, so threads splitting the heads read their own
        // streams) and those four groups ahead into L2: the hardware prefetcher alone left the
        // scale pass waiting on memory (at DRAM size: +5–12% for the next group, +8–10% more for
        // the L2 one, +5–7% more for the second L1 one; the L2 one instead of the L1 ones was
        // slower, the scale pass then waits on L2; a third L1 one was slower too).
        var code = ""
        if full > 0 {
            // The integer kernels spread these prefetches over their products instead (group
            // two ahead into L1, four ahead into L2), given the group two ahead.
            let prefetches = Self.integerKeys(s, d: d) ? "" : """
                        prefetchBytes(group + \(d * rowBytes), \(d * rowBytes))
                        prefetchBytes(group + \(2 * d * rowBytes), \(d * rowBytes))
                        prefetchBytesL2(group + \(4 * d * rowBytes), \(d * rowBytes))

            """
            let scaling = "            \(heads <= 4 ? "scaleQueriesH\(heads)(qg," : "scaleQueries(qg, heads: \(heads),") group, rowBytes: \(rowBytes), d: \(d), scaled, bias)\n"
            let fused = Self.fusedQueryPreparation(s, heads: heads, d: d)
            var inner = """
                        let group = keys + (\(s.keys) &+ g &* \(headStride) &+ grp &* \(d * rowBytes))
            \(prefetches)
            """
            if fused {
                // AVX-512 VNNI: the scaled query's rounding fused into one pass (FusedQueryPreparation).
                inner += "#if KVPLAN_AVX512VNNI\n"
                for h0 in Swift.stride(from: 0, to: heads, by: 4) {
                    inner += "            prepareQueriesH4(qg + \(h0 * d), group, qrow.codes + \(h0 * d), qrow.scales + \(h0 * d / 32), bias + \(h0), scaled)\n"
                }
                inner += "#else\n" + scaling + "#endif\n"
            } else {
                inner += scaling
            }
            var h0 = 0
            if Self.integerKeys(s, d: d) {
                // Integer products over the rounded scaled query; the portable build multiplies the
                // same rounded query in f32.
                inner += "#if KVPLAN_AVX2\n"
                    + (fused ? "#if !KVPLAN_AVX512VNNI\n" : "")
                    + "            roundQueries(scaled, \(heads * d), qrow.codes, qrow.scales)\n"
                    + (fused ? "#endif\n" : "")
                while h0 < heads {
                    let n = min(4, heads - h0)
                    inner += "            keyGroupLogitsI8H\(n)(qrow.codes + \(h0 * d), qrow.scales + \(h0 * d / 32), group, rowBytes: \(rowBytes), d: \(d), bias + \(h0), scale: \(scale), lg + (\(h0 * stride + s.first) &+ grp &* 32), stride: \(stride), codes, ahead: group + \(2 * d * rowBytes))\n"
                    h0 += n
                }
                inner += "#else\n            quantiseRow(scaled, \(heads * d), qrow)\n"
                h0 = 0
                while h0 < heads {
                    let n = min(Self.headsPerBlock(bits: s.keyBits), heads - h0)
                    inner += "            keyGroupLogitsB\(s.keyBits)H\(n)(qrow.values + \(h0 * d), group, rowBytes: \(rowBytes), d: \(d), bias + \(h0), scale: \(scale), lg + (\(h0 * stride + s.first) &+ grp &* 32), stride: \(stride), codes)\n"
                    h0 += n
                }
                inner += "#endif\n"
                h0 = heads
            }
            while h0 < heads {
                let n = min(Self.headsPerBlock(bits: s.keyBits), heads - h0)
                inner += "            keyGroupLogitsB\(s.keyBits)H\(n)(scaled + \(h0 * d), group, rowBytes: \(rowBytes), d: \(d), bias + \(h0), scale: \(scale), lg + (\(h0 * stride + s.first) &+ grp &* 32), stride: \(stride), codes)\n"
                h0 += n
            }
            code += "        for grp in 0..<\(full) {\n" + Self.indented(inner, 1) + "        }\n"
        }
        if rest > 0 {
            code += Self.indented("            quantizedKeyLogits(qg, heads: \(heads), keys + (\(s.keys + full * d * rowBytes) &+ g &* \(headStride)), tokens: \(rest), channels: \(d), first: 0, d: \(d), bits: \(s.keyBits), group: 32, scale: \(scale), lg + \(s.first + full * 32), stride: \(stride), codes: codes, bias: bias)\n", 0)
        }
        return code
    }

    /// True when segment `s`'s values are multiplied in 16-bit integers (ValueProductRounding).
    static func integerValues(_ s: KVSegment, dv: Int) -> Bool {
        ValueProductRounding.applies(bits: KVBits(rawValue: s.valueBits) ?? .b16, headDim: dv)
    }

    /// True when segment `s`'s whole key groups are multiplied in 8-bit integers (KeyProductRounding).
    static func integerKeys(_ s: KVSegment, d: Int) -> Bool {
        s.count >= 32 && KeyProductRounding.applies(bits: KVBits(rawValue: s.keyBits) ?? .b16, tokens: 32, headDim: d)
    }

    /// valueAccumulation for a token-major segment (4 heads, dv 128, 4-bit, any token count):
    /// prepareWeightsH4 once per tile of 256, then valueGroupAccumulateI16T4 per channel group.
    private func tokenMajorValueAccumulation(_ s: KVSegment, stride: Int, received: String) -> String {
        let headBytes = 4 * 20, headStride = s.count * headBytes
        return """
                for t0 in stride(from: 0, to: \(s.count), by: 256) {
                    let n = min(256, \(s.count) &- t0)
                    let tile = values + (\(s.values) &+ g &* \(headStride) &+ t0 &* \(headBytes))
                    let next = tile + \(256 * headBytes), ahead = max(0, min(256, \(s.count) &- t0 &- 256)) &* \(headBytes)
                    prepareWeightsH4(lg + (\(s.first) &+ t0), stride: \(stride), weightFactors, tile, tokens: n, tileCodes, tileScales, tileBias, \(received), stage)
                    for j in 0..<4 {
                        let quarter = j &* \(256 * 20)
                        valueGroupAccumulateI16T4(tileCodes + j &* 8, tileScales + j &* 4, tokens: n, tile + j &* 20, rowBytes: \(headBytes), tileBias + j &* 4, yg + j &* 32, dv: 128, codes, ahead: ahead > quarter ? next + quarter : tile)
                    }
                }

        """
    }

    /// valueAccumulation for an fp16 segment whose slots hold exp(l − m) (the softmax folded):
    /// each weight times weightFactors[h] (1/Z_h), and every slot's received attention written.
    private func halfValueAccumulation(_ s: KVSegment, heads: Int, channels c: Int, dv: Int, stride: Int, received: String) -> String {
        let rowBytes = KVSegmentLayout(kind: .values, tokens: 1, channels: c, bits: .b16).bytes
        return Self.indented("""
                    let rec = \(received)
                    for s in 0..<\(s.count) {
                        var r: Float = 0
                        for h in 0..<\(heads) { weights[h] = lg[h &* \(stride) &+ \(s.first) &+ s] * weightFactors[h]; r += weights[h] }
                        rec[s] = r
                        if occ[\(s.first) &+ s] >= 0 { halfValueAccumulate(values + (\(s.values) &+ s &* \(rowBytes)), first: g &* \(dv), dv: \(dv), heads: \(heads), weights: weights, yg) }
                    }

        """, 0)
    }

    /// Code adding segment `s`'s weighted values into every head's output.
    private func valueAccumulation(_ s: KVSegment, heads: Int, channels c: Int, dv: Int, stride: Int) -> String {
        let rowBytes = KVSegmentLayout(kind: .values, tokens: 1, channels: c, bits: KVBits(rawValue: s.valueBits) ?? .b16).bytes
        if s.valueBits == 16 || dv % 32 != 0 {
            let accumulate = s.valueBits == 16
                ? "halfValueAccumulate(values + (\(s.values) &+ s &* \(rowBytes)), first: g &* \(dv), dv: \(dv), heads: \(heads), weights: weights, yg)"
                : "quantizedValueAccumulate(values + (\(s.values) &+ s &* \(rowBytes)), first: g &* \(dv), dv: \(dv), bits: \(s.valueBits), group: 32, heads: \(heads), weights: weights, yg, codes: codes)"
            return Self.indented("""
                        for s in 0..<\(s.count) where occ[\(s.first) &+ s] >= 0 {
                            for h in 0..<\(heads) { weights[h] = lg[h &* \(stride) &+ \(s.first) &+ s] }
                            \(accumulate)
                        }

            """, 0)
        }
        // Quantised values of whole groups are stored head-major (KVSegmentLayout): KV head g's
        // rows of the segment are contiguous, `headBytes` apart, read in blocks of 256 tokens;
        // each block first prefetches (into L2) the next block's rows.
        let groupBytes = 4 + 32 * s.valueBits / 8
        let headBytes = dv / 32 * groupBytes, headStride = s.count * headBytes
        var inner = """
                    let next = values + (\(s.values) &+ g &* \(headStride) &+ (t0 &+ 256) &* \(headBytes)), ahead = max(0, min(256, \(s.count) &- t0 &- 256)) &* \(headBytes)
                    for j in 0..<\(dv / 32) {
                        let quarter = j &* \(256 * headBytes / (dv / 32))
        \(Self.integerValues(s, dv: dv) ? "" : "                prefetchBytesL2(next + quarter, min(max(0, ahead &- quarter), \(256 * headBytes / (dv / 32))))\n")                let rows = values + (\(s.values) &+ g &* \(headStride) &+ t0 &* \(headBytes) &+ j &* \(groupBytes))
                        \(heads <= 4 ? "scaleWeightsH\(heads)(lg + (\(s.first) &+ t0), stride: \(stride), occ + (\(s.first) &+ t0)," : "scaleWeights(lg + (\(s.first) &+ t0), stride: \(stride), occ + (\(s.first) &+ t0), heads: \(heads),") rows, rowBytes: \(headBytes), tokens: n, scaled, bias)

        """
        var h0 = 0
        if Self.integerValues(s, dv: dv) {
            // 16-bit products over the weights rounded per 32 tokens (ValueProductRounding).
            inner += "                roundWeights(scaled, heads: \(heads), n, weightCodes, weightScales)\n"
            while h0 < heads {
                let n = min(4, heads - h0)
                inner += "                valueGroupAccumulateI16H\(n)(weightCodes + \(h0 * 256), weightScales + \(h0 * 8), tokens: n, rows, rowBytes: \(headBytes), bias + \(h0), yg + (\(h0 * dv) &+ j &* 32), dv: \(dv), codes, ahead: ahead > quarter ? next + quarter : rows)\n"
                h0 += n
            }
        }
        while h0 < heads {
            let n = min(Self.headsPerBlock(bits: s.valueBits), heads - h0)
            inner += "                valueGroupAccumulateB\(s.valueBits)H\(n)(scaled + \(h0) &* n, tokens: n, rows, rowBytes: \(headBytes), bias + \(h0), yg + (\(h0 * dv) &+ j &* 32), dv: \(dv), codes)\n"
            h0 += n
        }
        inner += "            }\n"
        return "        for t0 in stride(from: 0, to: \(s.count), by: 256) {\n            let n = min(256, \(s.count) &- t0)\n" + Self.indented(inner, 1) + "        }\n"
    }
}
