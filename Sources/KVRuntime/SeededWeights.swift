import KVArtifact

/// Deterministic weights for runs without `--weights`: the same values on every machine.
///
/// Each weight tensor gets its own SplitMix64 stream seeded from its name and the seed, so
/// adding a tensor does not change the others. Norm scales (rank 1) are 1 + u/10; matrices are
/// uniform in ±1/√(fan-in) (fan-in = the last axis), the scale of a freshly initialised layer,
/// so activations stay O(1) through the network and the logits are not degenerate.
public enum SeededWeights {
    /// Weights for every weight tensor of `program`, by name.
    public static func make(_ program: ModelProgram, seed: UInt64 = 0) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for t in program.tensors where t.kind == "weight" {
            var state = seed &+ fnv1a(Array(t.name.utf8))
            func next() -> Float { Float(splitMix64(&state) >> 40) / Float(1 << 24) * 2 - 1 }  // uniform in [-1, 1)
            // Drawn in the checkpoint's layout, so a weight stored transposed (WeightQuantization)
            // holds the same values as without the conversion, only transposed.
            let fanIn = Float(max(1, t.checkpointShape.last ?? 1))
            let scale: Float = t.shape.count == 1 ? 0.1 : 1 / fanIn.squareRoot()
            out[t.name] = t.fromCheckpoint((0..<t.elementCount).map { _ in t.shape.count == 1 ? 1 + scale * next() : scale * next() })
        }
        return out
    }
}

/// FNV-1a, 64 bits: seeds per tensor name and the kernel cache's content hash.
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}

/// The next SplitMix64 output from `state` (advances it): seeded weights and sampling.
func splitMix64(_ state: inout UInt64) -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
