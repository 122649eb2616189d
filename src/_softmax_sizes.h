/*
 * Block and tile sizes of the softmax-family kernels, shared by the generic
 * kernels (_softmax_kernels.h, _softmax_impl.h) and the short-row kernels
 * (_softmax_rows8.h, _softmax_avx2.h).
 */
#ifndef SOFTARRAY_SOFTMAX_SIZES_H
#define SOFTARRAY_SOFTMAX_SIZES_H

/* Widest column block the column kernel handles (its scratch lives on the stack). */
#define SA_COL_BLOCK_MAX 256
/* Pass-1 block length along a row: 512 floats or doubles stay in L1. */
#define SA_ROW_BLOCK 512
/* Rows of up to this many bytes store exp() in pass 1 and only rescale it
 * in pass 2 (one exp per entry); longer rows recompute exp() in pass 2 and
 * read the input twice instead of the output twice. Up to 512 KiB (a
 * language model's 128000 float32 logits) the row stays in L2 between the
 * passes; beyond, the second exp costs more than rereading the output from
 * memory at one thread on AVX2 and AVX-512 machines: 8 MiB measured
 * 1.3-1.8x faster than 512 KiB on 1x1000000 float32 and 8x128000 and
 * 1x1000000 float64 (docs/performance.md). The shift array of a row
 * (SA_CACHED_ROW_BLOCKS doubles, 32 KiB) lives on the stack. */
#define SA_CACHED_ROW_BYTES (8 * 1024 * 1024)
/* Blocks of such a row at most (float32: the narrowest type). */
#define SA_CACHED_ROW_BLOCKS (SA_CACHED_ROW_BYTES / (SA_ROW_BLOCK * 4))
/* Softmax and log_softmax write an output of at least this many bytes by
 * non-temporal stores (sa_rows_streamed): beyond the last-level cache of
 * common machines (32 MiB on an AMD Zen 4 CCX), where the output leaves the
 * caches before the caller reads it, and a plain store's read of each line
 * before writing it is traffic for nothing. glibc's memcpy switches to such
 * stores at a threshold of the same kind. */
#define SA_STREAM_OUT_BYTES (32 * 1024 * 1024)
/* ... softmax for rows of up to this many bytes, staged in a buffer that
 * stays in L2 between the passes (a language model's 128000 float32
 * logits); log_softmax for rows of any length. */
#define SA_STAGE_ROW_BYTES (512 * 1024)
/* Rows this short go through the transposed-tile path (sa_rows_small). */
#define SA_SMALL_ROW_MAX 32
#define SA_SMALL_TILE 64
/* At most this many short float64 rows take sa_row_short_alone instead of a
 * tile (x86-64-v3; C harness on the Intel Xeon of 2026-12-06, see
 * docs/performance.md). */
#define SA_SHORT_ROWS_ALONE 2
/* Tile rows are padded so the transposes' strided accesses do not all land
 * in the same few L1 sets (a stride of 256 bytes halves their speed). */
#define SA_SMALL_STRIDE (SA_SMALL_TILE + 4)
/* Column sums are kept in the input type for this many rows at a time. */
#define SA_COL_CHUNK 32

#endif /* SOFTARRAY_SOFTMAX_SIZES_H */
