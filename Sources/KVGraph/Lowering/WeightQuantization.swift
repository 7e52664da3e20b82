// Weight quantisation: store the weights of linear layers in another dtype (f16, bf16, or ggml's
// q8_0 / q4_0 blocks), as llama.cpp does for its model files — the planner then places, moves and
// budgets the bytes that format really takes, and the runtime quantises at load.
//
// Only the weight operand of a `linear` (matmul with transpose_b, a 2-D weight) changes: its rows
// are the dot products' reduction axis, so a block never straddles two outputs. A 2-D weight that
// matmuls read as [in, out] (GPT-2's Conv1D) is stored transposed — [out, in], its readers given
// transpose_b — and marked `storedTransposed`, so the runtime transposes the checkpoint's matrix at
// load; without that its blocks would run across the outputs. Every other weight
// (embeddings, norms, biases, convolutions) keeps its dtype, and so does a weight that anything
// but a linear reads (a tied embedding table), which the result lists as kept — unless `tied` asks
// for the table too, whose lookups then decode the gathered rows (in a tied model the output
// projection is the largest tensor a decode step reads). Block formats need rows of whole blocks
// (32 values); the refusal names the first weight whose rows are not.

/// Rewrites the dtype of the weights of linear layers.
public enum WeightQuantization {
    /// What the pass changed and what it kept.
    public struct Outcome: Sendable, Equatable {
        /// Weights now stored in the requested dtype.
        public var converted: [String]
        /// Linear weights left as they were, each with why.
        public var kept: [String]
        /// Converted weights the checkpoint holds as [in, out] (GPT-2's Conv1D), now stored [out, in].
        public var transposed: [String] = []
        /// Bytes of all weights before and after.
        public var bytesBefore: Int
        public var bytesAfter: Int
    }

    /// Why the pass refused, at the weight's declaration when there is one.
    public struct Refusal: Error, Sendable {
        public var location: SourceLocation?
        public var message: String
    }

    /// Dtypes the pass stores linear weights in.
    public static let formats: [DType] = [.f32, .f16, .bf16, .q8_0, .q4_0]

    /// Stores every linear weight of `graph` as `dtype`. `tied`: a linear weight that embedding
    /// lookups read too (a tied embedding table) is converted as well — its gathered rows are
    /// then decoded by the lookup — instead of being kept.
    public static func apply(to graph: inout Graph, dtype: DType, tied: Bool = false) throws(Refusal) -> Outcome {
        guard formats.contains(dtype) else {
            throw Refusal(location: nil, message: "weights cannot be stored as \(dtype.rawValue); expected \(formats.map(\.rawValue).joined(separator: ", "))")
        }
        let weightBytes = graph.tensors.filter { $0.kind == .weight }.reduce(0) { $0 + $1.byteSize }
        // linear: read as [out, in] (transpose_b); inOut: read as [in, out] (GPT-2's Conv1D).
        var linear = Set<TensorID>(), inOut = Set<TensorID>(), other = Set<TensorID>()
        for op in graph.ops {
            for (i, t) in op.operands.enumerated() where graph.tensors[t].kind == .weight {
                let matrix = op.kind == .matmul && i == 1 && graph.tensors[t].shape.count == 2
                let isTiedTable = tied && op.kind == .embed && i == 0
                if matrix && op.attribute("transpose_b") == .bool(true) {
                    linear.insert(t)
                } else if matrix && (op.attribute("transpose_b") ?? .bool(false)) == .bool(false) {
                    inOut.insert(t)
                } else if !isTiedTable {
                    other.insert(t)
                }
            }
        }
        var converted: [String] = [], kept: [String] = [], transposed: [String] = []
        for t in linear.union(inOut).sorted() {
            let tensor = graph.tensors[t]
            if other.contains(t) {
                kept.append("\(tensor.name) (also read by an op other than a linear layer)")
                continue
            }
            if linear.contains(t) && inOut.contains(t) {
                kept.append("\(tensor.name) (read both as [out, in] and as [in, out])")
                continue
            }
            guard tensor.dtype != dtype else { continue }
            // An [in, out] matrix is stored [out, in], its readers multiplying by the transpose,
            // so its rows run along the reduction axis like every linear weight's.
            let flip = inOut.contains(t)
            let rowLength = (flip ? tensor.shape[0] : tensor.shape[1]).size
            if let block = dtype.blockElements, rowLength % block != 0 {
                throw Refusal(location: tensor.location,
                              message: "'\(tensor.name)' has rows of \(rowLength) values; \(dtype.rawValue) stores whole blocks of \(block)")
            }
            graph.tensors[t].dtype = dtype
            if flip {
                graph.tensors[t].shape.reverse()
                graph.tensors[t].storedTransposed = true
                for o in graph.ops.indices where graph.ops[o].kind == .matmul && graph.ops[o].operands.count > 1 && graph.ops[o].operands[1] == t {
                    graph.ops[o].attributes.removeAll { $0.0 == "transpose_b" }
                    graph.ops[o].attributes.append(("transpose_b", .bool(true)))
                    graph.ops[o].attributes.sort { $0.0 < $1.0 }
                }
                transposed.append(tensor.name)
            }
            converted.append(tensor.name)
            let delta = graph.tensors[t].byteSize - tensor.byteSize
            for o in graph.ops.indices {
                let reads = graph.ops[o].operands.filter { $0 == t }.count
                graph.ops[o].bytesTouched += reads * delta
            }
        }
        let after = graph.tensors.filter { $0.kind == .weight }.reduce(0) { $0 + $1.byteSize }
        return Outcome(converted: converted, kept: kept, transposed: transposed, bytesBefore: weightBytes, bytesAfter: after)
    }
}
