// How a linear layer with q8_0 or q4_0 weights sees its input: each activation row quantised to
// int8 per block of 32 values, as ggml does before its integer dot products (its vec_dot_type
// for q4_0 and q8_0 is q8_0).
//
// Rationale. The generated GEMV over these formats multiplies 8-bit codes (QuantisedDotHelpers in
// KVCodegen), so the input it multiplies is not x but x rounded to 8 bits per block. The reference
// interpreter computes with exactly these values, so a kernel is compared with the same
// arithmetic up to summation order, and the rounding's effect on the model shows in end-to-end
// figures rather than hiding inside a kernel tolerance. One difference from ggml: the block scale
// d = max|x|/127 stays f32 (ggml rounds it to fp16), codes are round-to-nearest-even (what
// `vroundps` and `vcvtps2dq` do), and a zero block has d = 0 and codes 0.

/// The 8-bit rounding of activations that q8_0 / q4_0 GEMVs compute with.
public enum ActivationQuantisation {
    /// Values per block (one f32 scale each).
    public static let blockElements = 32

    /// True when a linear layer with weights stored as `format` quantises its input rows.
    public static func applies(to format: WeightFormat) -> Bool { format == .q8_0 || format == .q4_0 }

    /// The scale and int8 codes of one block of 32 values.
    public static func quantise(block x: ArraySlice<Float>) -> (scale: Float, codes: [Int8]) {
        precondition(x.count == blockElements, "a block holds \(blockElements) values, not \(x.count)")
        let amax = x.reduce(Float(0)) { max($0, abs($1)) }
        let d = amax / 127
        let inverse: Float = d == 0 ? 0 : 1 / d
        return (d, x.map { v in
            let r = (v * inverse).rounded(.toNearestOrEven)
            return r.isNaN ? 0 : Int8(max(-127, min(127, r)))
        })
    }

    /// `row` as the quantised GEMV multiplies it: code·scale per value (row.count a multiple of 32).
    public static func roundTrip(_ row: ArraySlice<Float>) -> [Float] {
        precondition(row.count % blockElements == 0, "\(row.count) values are not whole blocks of \(blockElements)")
        var out: [Float] = []
        out.reserveCapacity(row.count)
        var start = row.startIndex
        while start < row.endIndex {
            let (d, codes) = quantise(block: row[start..<start + blockElements])
            for c in codes { out.append(Float(c) * d) }
            start += blockElements
        }
        return out
    }
}
