import KVGraph
import Foundation
let path = CommandLine.arguments[1]
let text = try String(contentsOfFile: path, encoding: .utf8)
do {
    let g = try GraphCompiler.compile(SourceFile(path: path, text: text))
    print(IRPrinter.print(g.graph))
    print(DiagnosticRenderer.render(g.warnings, in: SourceFile(path: path, text: text)))
} catch {
    print(error)
}
