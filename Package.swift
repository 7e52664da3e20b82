// swift-tools-version: 6.0
import PackageDescription

// Module graph (see Docs/architecture in README): the compile side
// (KVGraph → KVPlanner) and the solver (CGLPK → KVSolver); the CLI `kvplan`
// is the only importer of ArgumentParser.
let package = Package(
    name: "kvplan",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "kvplan", targets: ["kvplan"]),
        .library(name: "KVGraph", targets: ["KVGraph"]),
        .library(name: "KVSolver", targets: ["KVSolver"]),
        .library(name: "KVPlanner", targets: ["KVPlanner"]),
        .library(name: "KVAlloc", targets: ["KVAlloc"]),
        .library(name: "KVArtifact", targets: ["KVArtifact"]),
        .library(name: "KVQuant", targets: ["KVQuant"]),
        .library(name: "KVRuntime", targets: ["KVRuntime"]),
        .library(name: "KVCodegen", targets: ["KVCodegen"]),
        .library(name: "KVInspect", targets: ["KVInspect"]),
    ],
    dependencies: [
        // The CLI's flag parsing, help and usage errors.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Heap: the priority queue behind the source-order-stable topological sort.
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        // min(count:sortedBy:): the cache manager's k worst-scored tokens out of ~10³ without a full sort.
        .package(url: "https://github.com/apple/swift-algorithms", from: "1.2.0"),
    ],
    targets: [
        // GLPK 5 from Debian's libglpk-dev (no pkg-config file; header in /usr/include).
        .systemLibrary(name: "CGLPK", path: "Sources/CGLPK"),
        .target(name: "KVSolver", dependencies: ["CGLPK"]),
        .target(name: "KVGraph", dependencies: [.product(name: "HeapModule", package: "swift-collections")]),
        // Static allocation on its own terms (no IR types, no solver).
        .target(name: "KVAlloc"),
        // The on-disk plan schema; no logic beyond encoding and validation.
        .target(name: "KVArtifact"),
        // KV block formats: exact sizes, reference pack/unpack (shared by compiler and runtime).
        .target(name: "KVQuant"),
        // The run side: loads artifacts and executes them; never links GLPK or the graph language.
        .target(name: "KVRuntime", dependencies: ["KVArtifact", "KVQuant", .product(name: "Algorithms", package: "swift-algorithms")]),
        // Swift source emission from a plan's program; the compile side's last stage.
        .target(name: "KVCodegen", dependencies: ["KVArtifact", "KVQuant"]),
        // Reading plans back for people: tables, traces, timelines (`kvplan inspect`); plan.json only.
        .target(name: "KVInspect", dependencies: ["KVArtifact"]),
        .target(name: "KVPlanner", dependencies: ["KVGraph", "KVAlloc", "KVArtifact", "KVSolver", "KVQuant"]),
        .executableTarget(
            name: "kvplan",
            dependencies: [
                "KVGraph", "KVPlanner", "KVSolver", "KVAlloc", "KVArtifact", "KVQuant", "KVRuntime", "KVCodegen", "KVInspect",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "KVSolverTests", dependencies: ["KVSolver"]),
        // Golden IR files are read by path (re-recordable with KVPLAN_RECORD=1), not bundled.
        .testTarget(name: "KVGraphTests", dependencies: ["KVGraph"], exclude: ["Golden"]),
        // The allocator's tests cross-check verdicts against GLPK on small instances.
        .testTarget(name: "KVAllocTests", dependencies: ["KVAlloc", "KVSolver"]),
        .testTarget(name: "KVPlannerTests", dependencies: ["KVPlanner", "KVGraph", "KVArtifact", "KVAlloc", "KVQuant"]),
        .testTarget(name: "KVQuantTests", dependencies: ["KVQuant"]),
        .testTarget(name: "KVRuntimeTests", dependencies: ["KVRuntime", "KVArtifact"]),
        // Golden terminal output is read by path (re-recordable with KVPLAN_RECORD=1).
        .testTarget(name: "KVInspectTests", dependencies: ["KVInspect", "KVArtifact", "KVPlanner", "KVGraph"], exclude: ["Golden"]),
        // Compiles emitted kernels with swiftc and runs them against the reference interpreter.
        .testTarget(name: "KVCodegenTests", dependencies: ["KVCodegen", "KVRuntime", "KVArtifact", "KVPlanner", "KVGraph", "KVQuant"], exclude: ["Fixtures"]),
        .testTarget(name: "kvplanTests", dependencies: ["kvplan", "KVRuntime", "KVArtifact"]),
        // The committed Generated/ kernels of tiny-llama on cpu, compiled as ordinary Swift sources,
        // so `swift test` runs emitted code without swiftc-at-runtime or dlopen. (One artifact only:
        // every schedule exports the same C symbols.)
        .target(name: "GeneratedTinyLlamaCPU", path: "Generated/tiny-llama/cpu",
                exclude: ["plan.json", "program.json", "schedule.json", "weights.json", "summary.txt"],
                sources: ["Kernels.swift", "Schedule.swift"]),
        .testTarget(name: "GeneratedCodeTests", dependencies: ["GeneratedTinyLlamaCPU", "KVRuntime", "KVArtifact"]),
    ]
)
