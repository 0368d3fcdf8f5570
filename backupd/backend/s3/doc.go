// Package s3 stores a repository in an S3-compatible bucket (AWS S3,
// MinIO, and stores that honour conditional writes), through
// aws-sdk-go-v2.
//
// # Key layout
//
// Under the prefix (none: the bucket's root), the same layout as the local
// backend, so a repository can be copied between the two with a plain sync:
//
//	PREFIX/config                    the config object
//	PREFIX/data/<first two>/<name>   packs, spread over 256 key prefixes
//	PREFIX/<type>/<name>             every other type (index, snapshots, keys,
//	                                 locks, markers, results, damaged)
//
// The two-character level of packs also spreads the request rate over S3's
// per-prefix partitions. List pages through ListObjectsV2 under
// PREFIX/<type>/ and skips keys that do not fit the layout.
//
// # Writes
//
// Save is one PutObject with If-None-Match: * (the store refuses the write
// with 412 when the key exists: backend.ErrExists) and a SHA256 checksum of
// the body that the store verifies before storing it (x-amz-checksum-sha256:
// over HTTPS a trailer of an unsigned aws-chunked body; over plain HTTP a
// header, and the SigV4 payload hash, also SHA256, is verified too). An
// object larger than PartSize (64 MiB by default) is a multipart upload:
// parts of PartSize with their own SHA256 checksums, one at a time,
// completed with If-None-Match: * only after every part is stored; on any
// failure the upload is aborted (best effort, with a fresh 30 s context) so
// that no object is visible and no parts linger. Parts a killed writer left
// are aborted by CleanTemp (which lists the bucket's uploads and filters
// them by prefix: MinIO takes a listing prefix for an exact key).
//
// Memory per upload is small and bounded: no part is buffered. Each part is
// an io.SectionReader over the content: read in place from an io.ReaderAt
// (a pack's temp file), or, for any other io.ReadSeeker, through seek+read
// under a lock. The SDK reads a body twice (once for its checksum, once to
// send it) with its own copy buffers of a few tens of KiB.
//
// Create probes the store: it writes a probe object under the prefix twice
// with If-None-Match: * and wants the second write refused, then removes
// the probe. A store that ignores the condition is refused unless
// AllowUnconditionalWrites is set; then Save sends no condition and checks
// for the object with HeadObject first, which a racing writer can beat.
//
// # Reads
//
// Load is one GetObject, ranged unless the whole object is asked for. A
// whole-object read asks for the object's checksum (ChecksumMode ENABLED)
// and the SDK verifies the body against it: a mismatch matches
// backend.ErrIntegrity. Multipart objects carry a checksum of part
// checksums, which the SDK does not verify; nor is a ranged read verified:
// there the repository's own hashes are the check. The body handed to fn
// counts its bytes against the Content-Length: a body that ends early (a
// connection cut mid-body) is a transient error, not io.ErrUnexpectedEOF,
// which is kept for an object shorter than the range asked (also a 416).
//
// # Errors and retries
//
// The client makes one attempt per call: the SDK's retryer is
// aws.NopRetryer, and a retrying wrapper decides with backend.IsTransient.
// Errors are mapped in one place (mapError): NoSuchKey/404 to
// backend.ErrNotFound, 412 to backend.ErrExists, 416 to io.ErrUnexpectedEOF,
// 403 to "access denied for bucket X", rejected credentials to a message
// naming at most the access key id, NoSuchBucket to "bucket X does not
// exist", and 5xx, 429, throttling, 409 conflicts and failed connections to
// backend.Transient. The caller's context ending stays context.Canceled or
// context.DeadlineExceeded. No request has a timeout of its own: a stalled
// connection ends with the caller's context.
//
// # Credentials and endpoint
//
// config.LoadDefaultConfig resolves the whole AWS chain: environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
// AWS_ENDPOINT_URL[_S3], AWS_CA_BUNDLE), AWS_PROFILE or Options.Profile, the
// shared config and credentials files, web identity (IRSA) and container
// credentials (EKS Pod Identity, ECS). Static credentials in Options take
// precedence. A custom endpoint is addressed by path unless PathStyle says
// otherwise.
//
// # Optional features
//
// ServerClock (the Date header of the latest quick answer, or of a HeadBucket
// when none is under a minute old) and TempCleaner (aborting
// stale multipart uploads). Not SpaceReporter: an object store has no free
// space figure. Not TempDirer: packs are built on local disk.
//
// Imports: backend, faultpoint (the crash tests' fault points) and the AWS
// SDK. Like all of the engine it never imports Prometheus, collectors/ or
// exporter/ (docs/DESIGN.md §2.3).
package s3
