import Dispatch
import Foundation

// One status line on stderr for long-running commands: elapsed time, stage, and what the stage
// knows (window k/n, incumbent and gap, runs done). Redrawn in place (carriage return + erase)
// a few times a second by a timer, so elapsed time moves even while a solver is silent; cleared
// when the command ends, so the command's real output follows on a clean line.
//
// Only on a terminal: when stderr is not a TTY (pipes, files, CI logs) nothing is written at all.
// KVPLAN_PROGRESS=always forces it on (tests use it), KVPLAN_PROGRESS=never forces it off.

/// A status line on stderr that only exists on a terminal.
final class ProgressLine: @unchecked Sendable {
    /// Whether progress is shown: stderr is a terminal (or KVPLAN_PROGRESS says otherwise).
    static var isEnabled: Bool {
        switch ProcessInfo.processInfo.environment["KVPLAN_PROGRESS"] {
        case "always": true
        case "never": false
        default: isatty(2) != 0 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        }
    }

    private let command: String
    private let enabled: Bool
    private let lock = NSLock()
    private let start = ContinuousClock.now
    private var stageName = ""
    private var detailText = ""
    private var timer: DispatchSourceTimer?
    private var drawn = false

    /// Starts a line for `command` (e.g. `compile`); does nothing when progress is not shown.
    init(_ command: String, enabled: Bool = ProgressLine.isEnabled) {
        self.command = command
        self.enabled = enabled
        guard enabled else { return }
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        timer.schedule(deadline: .now() + .milliseconds(250), repeating: .milliseconds(250))
        timer.setEventHandler { [weak self] in self?.redraw() }
        timer.resume()
        self.timer = timer
    }

    deinit { finish() }

    /// Enters a new stage (drawn at once); clears the detail.
    func stage(_ name: String, _ detail: String = "") {
        guard enabled else { return }
        lock.lock()
        stageName = name
        detailText = detail
        lock.unlock()
        redraw()
    }

    /// Updates what the current stage reports (drawn by the next tick).
    func detail(_ text: String) {
        guard enabled else { return }
        lock.lock()
        detailText = text
        lock.unlock()
    }

    /// Prints `line` on stdout above the status line (which the next tick redraws).
    func print(_ line: String) {
        guard enabled else { Swift.print(line); return }
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drawn = false
        Swift.print(line)
        fflush(nil)  // all streams: stdout before the next redraw
    }

    /// Erases the line and stops redrawing; safe to call more than once.
    func finish() {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        timer?.cancel()
        timer = nil
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drawn = false
    }

    private func redraw() {
        lock.lock()
        defer { lock.unlock() }
        guard timer != nil else { return }
        let elapsed: Double = (ContinuousClock.now - start) / .seconds(1)
        var line = String(format: "%@ %.1f s", command, elapsed)
        if !stageName.isEmpty { line += " · " + stageName }
        if !detailText.isEmpty { line += " · " + detailText }
        let width = Self.columns() - 1
        if line.count > width { line = String(line.prefix(max(1, width - 1))) + "…" }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
        drawn = true
    }

    /// The terminal's width (100 when unknown).
    private static func columns() -> Int {
        var size = winsize()
        if ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 10 { return Int(size.ws_col) }
        return 100
    }
}
