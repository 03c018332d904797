// Package release holds the test that `make release` (scripts/release.sh) is
// reproducible: the same commit and Go toolchain give the same bytes from another
// checkout path and a cold build cache. It has no code of its own.
package release
