// Package archtest holds the test that keeps the module's imports pointing
// one way (docs/DESIGN.md §2.3). It has no code of its own; it may import
// only the standard library, and nothing imports it.
package archtest
