// Package analyze reads the saved output of the usual socket tools, taken on
// another host, and turns it into a [snapshot.Snapshot] that the diagnosis
// and the renderers take like a live one.
//
// # Formats
//
// The format is detected from the text:
//
//	ss -tan, ss -tanp, ss -tanpi, ss -tanpieo  (also -H, -O, "state close-wait" filters, ss -tuan)
//	ss -s                                      (summary counts only)
//	netstat -ant, netstat -antp, netstat -antpe, netstat -antpo, netstat -antpW
//	lsof -nP -iTCP                             (with or without -sTCP:CLOSE_WAIT, -T qs)
//
// Gzip-compressed input is read as well.
//
// # Memory
//
// The input is read as a stream, one line at a time: memory follows the
// sockets the parsers keep (CLOSE_WAIT and listening ones; the other states
// are only counted), not the size of the input. A line (with its ss
// continuation lines) longer than [MaxLine] (16 MiB) or an input longer
// than [MaxInput] (1 GiB, decompressed) ends with an error saying so.
//
// Each format sees only part of what closewait reads on the host itself;
// [Result.Missing] names what the input could not tell (owners, queues,
// ages, fd limits), so the report can say so.
//
// # Errors
//
// Input that is not one of the formats gets an error naming the line; the
// parsers are fuzzed and never panic.
package analyze
