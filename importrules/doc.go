// Package importrules holds no code. Its test enforces berth's import
// rules over every package of the module, from the graph `go list -deps
// -json ./...` reports, and fails naming the offending import and the
// chain of imports that leads to it. The rules are documented in
// docs/ARCHITECTURE.md:
//
//  1. The daemon never imports the CLI: nothing outside cmd/berth imports
//     it, and cmd/berthd's dependency closure holds neither cmd/berth nor
//     github.com/spf13/cobra.
//  2. No containerd implementation, nerdctl or CRI-O, in any dependency
//     closure or test: from containerd's main repository only its API
//     module (github.com/containerd/containerd/api/...) is allowed; the
//     small single-purpose modules (errdefs, ttrpc, typeurl, log) live in
//     repositories of their own and are not concerned.
//  3. Layers only import downwards. The leaf subsystems (content,
//     content/local, filters, identifiers, labels, events, events/exchange,
//     images, leases, gc, log, namespaces, plugin, config, and since
//     then snapshots/..., mount, archive/..., diff/... and remotes/hosts)
//     never reach daemon, services/..., metadata or cmd/...; metadata
//     never reaches services/... or daemon; services/... never reach
//     daemon.
//  4. No grab-bag packages: none is named util, utils, common or helpers.
//
// Rules 1 to 3 are rows of a table in rules_test.go: a new subsystem
// (snapshots, cri, ...) gets its row, or joins the leaves, there. A row
// whose packages no longer exist fails the test too, so that a rename
// cannot silently lift a rule.
package importrules
