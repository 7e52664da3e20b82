// How decode attention multiplies the softmax weights with 4-bit value codes: in 16-bit integers,
// each weight (times its token's value scale) rounded to int16 per block of 32 tokens.
//
// Rationale. Against KIVI values (per token t and group of 32 channels: scale s_t, zero z_t,
// 4-bit codes) an output channel is Σ_t w_t·(s_t·code_tc + z_t) = Σ_t (w_t·s_t)·code_tc +
// Σ_t w_t·z_t. With grouped-query attention each code feeds one multiply-add per query head, so
// in f32 (16 per 512-bit FMA) the value phase alone is bound at about a third of the copy
// bandwidth (Docs/benchmarks.md). Rounding x_t = w_t·s_t to int16 per block B of 32 tokens
// (scale a_B = max|x|/32767, round to nearest even) lets the kernel multiply-add 16-bit pairs
// (`vpdpwssd` / `vpmaddwd`: two tokens per lane, 32 products per 512-bit instruction) with exact
// Int32 sums: y_c = Σ_B a_B·Σ_{t∈B} x16_t·code_tc + Σ_t w_t·z_t.
//
// Why 16 bits and not 8 like the keys (KeyProductRounding): the keys' rounding is mirrored by
// the reference interpreter, which can compute the same int8 codes because both sides scale
// the same f32 query. The weights come out of a softmax the kernel computes with its own exp,
// so the two sides' x_t differ in the last bits and a rounding can fall either way; at 8 bits
// one such flip moves an output by up to 15·a_B = 15·max|x|/127 (≈10⁻² here), more than a kernel
// tolerance. At 16 bits the rounding's whole error is bounded and small, so the reference keeps
// the exact products (and the perplexities of Docs/kv-results.md stay those of the exact
// arithmetic) and `run --check` allows the bound:
//
//   |Δy_c| ≤ Σ_B a_B·½·Σ_{t∈B} code_tc ≤ ½·15·32·Σ_B a_B ≤ (½·15·32/32767)·Σ_t |x_t|
//         ≤ (½·15·32/32767)·max_t |s_t|·Σ_t w_t ≤ 7.3·10⁻³·max_t |s_t|
//
// (Σ_t w_t ≤ 1; a_B ≤ Σ_{t∈B}|x_t|/32767). errorBound adds 2% for f32's own roundings (of the
// inverse, the product and Σw). Against the 4-bit step itself (½·s_t per value) that is
// 1.5% of the value quantisation's own worst case. It applies where the integer kernel runs:
// 4-bit values and head_dim a multiple of 32 (no value group straddles two heads).
//
// The rounding is per block and scale-free: rounding e_t·s_t, with e_t the softmax's numerators,
// gives the codes of (e_t/Z)·s_t up to f32's last bits, so a kernel may multiply a_B by 1/Z
// instead of normalising the weights first (KVCodegen's token-major path does); the bound holds as
// written, Σ_t w_t = 1 after the factor.

/// The int16 rounding of the scaled softmax weights that 4-bit value groups are multiplied with.
public enum ValueProductRounding {
    /// Tokens per rounding block (one f32 scale each).
    public static let blockTokens = 32
    /// The largest code magnitude: the block maximum maps to it.
    public static let levels: Float = 32767

    /// True when a value segment at `bits`, read by heads of `headDim` channels, is multiplied in
    /// 16-bit integers.
    public static func applies(bits: KVBits, headDim: Int) -> Bool {
        bits == .b4 && headDim % 32 == 0 && headDim > 0
    }

    /// The scale and int16 codes of one block of at most 32 scaled weights: scale = max|x|/32767,
    /// codes x/scale rounded to nearest even; a zero block has scale 0 and codes 0.
    public static func quantise(block x: ArraySlice<Float>) -> (scale: Float, codes: [Int16]) {
        precondition(x.count <= blockTokens, "a block holds at most \(blockTokens) weights, not \(x.count)")
        let amax = x.reduce(Float(0)) { max($0, abs($1)) }
        let a = amax / levels
        let inverse: Float = a == 0 ? 0 : 1 / a
        return (a, x.map { v in
            let r = (v * inverse).rounded(.toNearestOrEven)
            return r.isNaN ? 0 : Int16(max(-levels, min(levels, r)))
        })
    }

    /// The largest |output change| the rounding can cause in a 4-bit value group whose token
    /// scales are at most `largestScale` in magnitude (softmax weights summing to at most 1).
    public static func errorBound(largestScale: Float) -> Float {
        0.5 * 15 * Float(blockTokens) / levels * 1.02 * abs(largestScale)
    }
}
