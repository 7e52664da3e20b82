/// The `--dump-ir` text form: stable, diff-friendly, one line per tensor declaration and per op.
public enum IRPrinter {
    /// Prints `graph` as text.
    public static func print(_ graph: Graph) -> String {
        var out = "graph \(graph.name)\n"
        for d in graph.dimensions { out += "dim \(d.name) = \(d.value)\n" }
        out += "\n"
        for t in graph.tensors where t.kind == .input || t.kind == .weight || t.kind == .cache {
            out += "\(t.kind.rawValue) \(t.name): \(type(t))  # \(t.byteSize) B\n"
        }
        out += "\n"
        for id in graph.order {
            let op = graph.ops[id]
            let results = op.results.map { r -> String in
                let t = graph.tensors[r]
                return "\(t.kind == .output ? "output " : "")\(t.name): \(type(t))"
            }.joined(separator: ", ")
            let operands = op.operands.map { graph.tensors[$0].name }.joined(separator: ", ")
            var line = "\(results) = \(op.kind.rawValue)(\(operands))"
            if !op.attributes.isEmpty {
                line += " {" + op.attributes.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") + "}"
            }
            if !op.updates.isEmpty {
                line += " updates(" + op.updates.map { graph.tensors[$0].name }.joined(separator: ", ") + ")"
            }
            line += "  # flops \(op.flops), bytes \(op.bytesTouched)"
            out += line + "\n"
        }
        return out
    }

    /// `f16[batch=1, 4096]`.
    public static func type(_ t: Tensor) -> String {
        "\(t.dtype.rawValue)[\(t.shape.map(\.description).joined(separator: ", "))]"
    }
}
