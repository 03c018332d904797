// Package docrefs holds the test that every Go file a comment or a document names
// exists: a file map or a "see foo.go" that outlives a rename misleads the next reader.
package docrefs
