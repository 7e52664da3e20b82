import KVArtifact
import KVQuant

// Decode attention kernels, specialised per layer: heads, GQA grouping, head dims, scale, batch
// and — for a packed cache — every segment's slot count, bit widths and byte offset are constants.
//
// Softmax is computed in two passes over a logit buffer rather than online: the cache manager
// needs every slot's normalised weight (H2O scores), so the logits are kept anyway and the
// second pass both accumulates values and reports the weights. Slots whose occupancy is -1 (not
// yet filled, or freed) are masked; the new token takes part at full precision and its rows are
// written to the planned place for the manager to append.

extension SwiftEmitter {
    /// Parameters of every attention kernel: q, k, v, key cache, value cache, y, new keys, new values, state.
    static let attentionSignature = "_ q: UnsafeMutablePointer<Float>, _ k: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>, "
        + "_ kc: UnsafeMutablePointer<Float>, _ vc: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, "
        + "_ kn: UnsafeMutablePointer<Float>, _ vn: UnsafeMutablePointer<Float>, _ state: UnsafeMutableRawPointer"

    func attentionKernel(_ op: ModelProgram.Op, cache: ExecutionSchedule.KVCache) -> (String, String) {
        let heads = op.int("heads") ?? 1
        let kvHeads = op.int("kv_heads") ?? heads
        let d = program.tensors[op.operands[0]].shape.last! / heads
        let c = cache.channels, dv = c / kvHeads, batch = cache.batch, slots = cache.slots
        let scale = Float(op.double("scale") ?? 1 / Double(d).squareRoot())
        let state = cache.stateLayout
        var body = """
            let occupancy = (state + \(state.occupancy)).assumingMemoryBound(to: Int32.self)
            let received = (state + \(state.received)).assumingMemoryBound(to: Float.self)
            let newScore = (state + \(state.newScore)).assumingMemoryBound(to: Float.self)
            let logits = UnsafeMutablePointer<Float>.allocate(capacity: \((heads / kvHeads) * (slots + 1)))
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: \(256 + 2 * (heads / kvHeads)))
            defer { logits.deallocate(); scratch.deallocate() }
            let codes = scratch, bias = scratch + 256, weights = scratch + \(256 + heads / kvHeads)
            for b in 0..<\(batch) {
                (kn + b &* \(c)).update(from: k + b &* \(c), count: \(c))
                (vn + b &* \(c)).update(from: v + b &* \(c), count: \(c))
                let rec = received + b &* \(slots)
                for s in 0..<\(slots) { rec[s] = 0 }
                newScore[b] = 0

        """
        // Per segment: (first slot, slots, key byte offset, value byte offset, key bits, value bits).
        var segments: [(first: Int, count: Int, keys: Int, values: Int, keyBits: Int, valueBits: Int)] = []
        if let l = cache.layout {
            let fixed = l.sinkTokens + l.windowTokens, low = l.lowBits > 0 ? l.lowTokens : 0
            let spec = [(fixed, 16, 16), (l.highTokens, l.keyBitsHigh, l.valueBitsHigh), (low, l.lowBits, l.lowBits)]
            var (slot, keys, values) = (0, 0, 0)
            for (count, kb, vb) in spec {
                if count > 0 { segments.append((slot, count, keys, values, kb, vb)) }
                slot += count
                keys += KVSegmentLayout(kind: .keys, tokens: count, channels: c, bits: KVBits(rawValue: kb) ?? .b16).bytes
                values += KVSegmentLayout(kind: .values, tokens: count, channels: c, bits: KVBits(rawValue: vb) ?? .b16).bytes
            }
            body += """
                    let occ = occupancy + b &* \(slots)
                    let keys = UnsafeRawPointer(kc) + b &* \(cache.keyBytes / batch), values = UnsafeRawPointer(vc) + b &* \(cache.valueBytes / batch)

            """
        } else {
            body += """
                    let n = Int(occupancy[b])

            """
        }
        if cache.layout != nil {
            let groupSize = heads / kvHeads, stride = slots + 1
            body += """
                    for g in 0..<\(kvHeads) {
                        let qg = q + (b &* \(heads) &+ g &* \(groupSize)) &* \(d)
                        let yg = y + (b &* \(heads) &+ g &* \(groupSize)) &* \(dv)

            """
            for s in segments {
                body += s.keyBits == 16
                    ? "            for h in 0..<\(groupSize) { halfKeyLogits(qg + h &* \(d), keys + \(s.keys), tokens: \(s.count), channels: \(c), first: g &* \(d), d: \(d), scale: \(scale), logits + (h &* \(stride) &+ \(s.first))) }\n"
                    : "            quantizedKeyLogits(qg, heads: \(groupSize), keys + \(s.keys), tokens: \(s.count), channels: \(c), first: g &* \(d), d: \(d), bits: \(s.keyBits), group: 32, scale: \(scale), logits + \(s.first), stride: \(stride), codes: codes, bias: bias)\n"
            }
            body += """
                        let vNew = v + (b &* \(c) &+ g &* \(dv))
                        for h in 0..<\(groupSize) {
                            let lh = logits + h &* \(stride)
                            let newLogit = dot(qg + h &* \(d), k + (b &* \(c) &+ g &* \(d)), \(d)) * \(scale)
                            var m = newLogit
                            for s in 0..<\(slots) where occ[s] >= 0 { m = max(m, lh[s]) }
                            let eNew = exp(newLogit - m)
                            var total = eNew
                            for s in 0..<\(slots) {
                                let e: Float = occ[s] >= 0 ? exp(lh[s] - m) : 0
                                lh[s] = e
                                total += e
                            }
                            let inv = 1 / total
                            for s in 0..<\(slots) { lh[s] *= inv }
                            let yh = yg + h &* \(dv)
                            for i in 0..<\(dv) { yh[i] = eNew * inv * vNew[i] }
                            newScore[b] += eNew * inv
                        }

            """
            for s in segments {
                let rowBytes = KVSegmentLayout(kind: .values, tokens: 1, channels: c, bits: KVBits(rawValue: s.valueBits) ?? .b16).bytes
                let accumulate = s.valueBits == 16
                    ? "halfValueAccumulate(values + (\(s.values) &+ s &* \(rowBytes)), first: g &* \(dv), dv: \(dv), heads: \(groupSize), weights: weights, yg)"
                    : "quantizedValueAccumulate(values + (\(s.values) &+ s &* \(rowBytes)), first: g &* \(dv), dv: \(dv), bits: \(s.valueBits), group: 32, heads: \(groupSize), weights: weights, yg, codes: codes)"
                body += """
                            for s in 0..<\(s.count) where occ[\(s.first) &+ s] >= 0 {
                                var received: Float = 0
                                for h in 0..<\(groupSize) {
                                    weights[h] = logits[h &* \(stride) &+ \(s.first) &+ s]
                                    received += weights[h]
                                }
                                rec[\(s.first) &+ s] += received
                                \(accumulate)
                            }

                """
            }
            body += "        }\n    }\n"
            return (Self.attentionSignature, body)
        }
        body += """
                _ = (codes, bias, weights)
                for h in 0..<\(heads) {
                    let g = h / \(heads / kvHeads)
                    let qh = q + (b &* \(heads) &+ h) &* \(d)
                    let yh = y + (b &* \(heads) &+ h) &* \(dv)

        """
        body += """
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

            """
        body += "        }\n    }\n"
        return (Self.attentionSignature, body)
    }
}
