import KVArtifact
import KVGraph

/// The checked graph as plain data for the run side (`program.json`, KVArtifact.ModelProgram).
///
/// Ops follow the graph's execution order and take the name of their first result (the name
/// the plan's steps use); attributes keep their types; tensor-valued and type-valued attributes
/// (a matmul's bias, an opaque op's declared results) are not attributes of the run side: a bias
/// is already an operand, and opaque ops cannot run.
public enum ProgramExport {
    /// The program of `graph`.
    public static func program(_ graph: Graph) -> ModelProgram {
        let tensors = graph.tensors.map {
            ModelProgram.Tensor(name: $0.name, kind: $0.kind.rawValue, dtype: $0.dtype.rawValue, shape: $0.shape.sizes,
                                storedTransposed: $0.storedTransposed ? true : nil)
        }
        let ops = graph.order.map { id -> ModelProgram.Op in
            let op = graph.ops[id]
            var attributes: [String: ModelProgram.Attribute] = [:]
            for (key, value) in op.attributes {
                switch value {
                case let .int(v): attributes[key] = .int(v)
                case let .float(v): attributes[key] = .float(v)
                case let .string(v): attributes[key] = .string(v)
                case let .bool(v): attributes[key] = .bool(v)
                case let .ints(v): attributes[key] = .ints(v)
                case .type, .types: break
                }
            }
            return ModelProgram.Op(name: op.results.first.map { graph.tensors[$0].name } ?? "op\(id)", kind: op.kind.rawValue,
                                   operands: op.operands, results: op.results, updates: op.updates, attributes: attributes)
        }
        var dimensions: [String: Int] = [:]
        for d in graph.dimensions { dimensions[d.name] = d.value }
        return ModelProgram(model: graph.name, dimensions: dimensions, tensors: tensors, ops: ops)
    }
}
