// ftflow correction layer for hls4ml: merges each original channel with its duplicated (or triplicated) copies.
//
// Inputs: the hardened layer's output (n_chan0 channels per pixel) and one or two copy layers' outputs (n_copy
// channels each), separate instances with separate weights; output: n_out_chan (= n_chan0) channels.
// Stacking the inputs' channels gives n_in_chan; src[c * n_sources + j] is the stacked channel of copy j of output
// channel c (rows padded by repeating the last).
// Each source is a multiplexer over the n_in_chan stacked channels, selected by the W-bit unsigned word src[i]
// (W = bit width of the largest fault-free index). Only a fault can write a select >= n_in_chan: such a select
// reads 0, as a mux whose unused inputs are tied to zero (defined in C-sim, the fast evaluation, the Keras
// emulation in flow/correction.py and the RTL in flow/hardware/rtl_trace.py alike).
// Policies (bit-exact with flow/correction.py):
//   min   : minimum of the copies (the paper's correction)
//   range : the copy inside [lo[c], hi[c]]; both or neither inside -> minimum (identical copies pass through)
//   vote  : median of three copies (TMR)
// clip   : clamp every result to [lo[c], hi[c]] (Ranger-style range restriction)
// The copies come from separate layer instances with their own weight arrays, and this function stays a separate
// instance too (INLINE off), so the redundant signals are not merged by the HLS compiler.
#ifndef NNET_CORRECTION_H_
#define NNET_CORRECTION_H_

#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

enum correction_policy { correction_min = 0, correction_range = 1, correction_vote = 2 };

struct correction_config {
    static const unsigned n_pixels = 1;
    static const unsigned n_in_chan = 2;
    static const unsigned n_chan0 = 1;
    static const unsigned n_copy = 1;
    static const unsigned n_out_chan = 1;
    static const unsigned n_sources = 2;
    static const unsigned policy = correction_min;
    static const bool clip = false;
};

template <class T, class bound_T, typename CONFIG_T> T correction_merge(T a, T mid, T last, bound_T lo, bound_T hi) {
    #pragma HLS INLINE
    T out;
    if (CONFIG_T::policy == correction_vote) {
        T lower = a < mid ? a : mid;
        T upper = a < mid ? mid : a;
        T upper_last = upper < last ? upper : last;
        out = lower < upper_last ? upper_last : lower; // max(min(a, mid), min(max(a, mid), last))
    } else if (CONFIG_T::policy == correction_range) {
        bool a_in = a >= lo && a <= hi;
        bool last_in = last >= lo && last <= hi;
        T smaller = a < last ? a : last;
        out = (a_in && !last_in) ? a : ((last_in && !a_in) ? last : smaller);
    } else {
        T smaller = a < mid ? a : mid;
        out = smaller < last ? smaller : last;
    }
    if (CONFIG_T::clip) {
        if (out < lo)
            out = lo;
        if (out > hi)
            out = hi;
    }
    return out;
}

// the stacked channel a source word selects; 0 past the stacked channels (a faulty word)
template <class T, class src_T, typename CONFIG_T> T correction_select(const T stacked[CONFIG_T::n_in_chan], src_T index) {
    #pragma HLS INLINE
    T zero = 0;
    return index < CONFIG_T::n_in_chan ? stacked[index] : zero;
}

// one pixel: merge the stacked channels (originals, then copies) into the corrected channels
template <class T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction_pixel(const T stacked[CONFIG_T::n_in_chan], res_T res[CONFIG_T::n_out_chan],
                      const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources], const bound_T lo[CONFIG_T::n_out_chan],
                      const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE
    const unsigned mid = CONFIG_T::n_sources > 2 ? 1 : CONFIG_T::n_sources - 1;
CorrectionChannels:
    for (unsigned c = 0; c < CONFIG_T::n_out_chan; c++) {
        #pragma HLS UNROLL
        const unsigned row = c * CONFIG_T::n_sources;
        res[c] = correction_merge<T, bound_T, CONFIG_T>(
            correction_select<T, src_T, CONFIG_T>(stacked, src[row]),
            correction_select<T, src_T, CONFIG_T>(stacked, src[row + mid]),
            correction_select<T, src_T, CONFIG_T>(stacked, src[row + CONFIG_T::n_sources - 1]), lo[c], hi[c]);
    }
}

// io_parallel, DMR: original + one copy layer
template <class data0_T, class data1_T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction(data0_T data0[CONFIG_T::n_pixels * CONFIG_T::n_chan0], data1_T data1[CONFIG_T::n_pixels * CONFIG_T::n_copy],
                res_T res[CONFIG_T::n_pixels * CONFIG_T::n_out_chan], const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources],
                const bound_T lo[CONFIG_T::n_out_chan], const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE off
    #pragma HLS PIPELINE
CorrectionPixels:
    for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
        #pragma HLS UNROLL
        data0_T stacked[CONFIG_T::n_in_chan];
        #pragma HLS ARRAY_PARTITION variable = stacked complete
        for (unsigned i = 0; i < CONFIG_T::n_chan0; i++)
            stacked[i] = data0[p * CONFIG_T::n_chan0 + i];
        for (unsigned j = 0; j < CONFIG_T::n_copy; j++)
            stacked[CONFIG_T::n_chan0 + j] = data1[p * CONFIG_T::n_copy + j];
        correction_pixel<data0_T, res_T, src_T, bound_T, CONFIG_T>(stacked, &res[p * CONFIG_T::n_out_chan], src, lo, hi);
    }
}

// io_parallel, TMR: original + two copy layers
template <class data0_T, class data1_T, class data2_T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction(data0_T data0[CONFIG_T::n_pixels * CONFIG_T::n_chan0], data1_T data1[CONFIG_T::n_pixels * CONFIG_T::n_copy],
                data2_T data2[CONFIG_T::n_pixels * CONFIG_T::n_copy], res_T res[CONFIG_T::n_pixels * CONFIG_T::n_out_chan],
                const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources], const bound_T lo[CONFIG_T::n_out_chan],
                const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE off
    #pragma HLS PIPELINE
CorrectionPixels:
    for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
        #pragma HLS UNROLL
        data0_T stacked[CONFIG_T::n_in_chan];
        #pragma HLS ARRAY_PARTITION variable = stacked complete
        for (unsigned i = 0; i < CONFIG_T::n_chan0; i++)
            stacked[i] = data0[p * CONFIG_T::n_chan0 + i];
        for (unsigned j = 0; j < CONFIG_T::n_copy; j++) {
            stacked[CONFIG_T::n_chan0 + j] = data1[p * CONFIG_T::n_copy + j];
            stacked[CONFIG_T::n_chan0 + CONFIG_T::n_copy + j] = data2[p * CONFIG_T::n_copy + j];
        }
        correction_pixel<data0_T, res_T, src_T, bound_T, CONFIG_T>(stacked, &res[p * CONFIG_T::n_out_chan], src, lo, hi);
    }
}

// io_stream: merge one pixel's stacked channels and write them as one stream word
template <class T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction_write(const T stacked[CONFIG_T::n_in_chan], hls::stream<res_T> &res,
                      const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources], const bound_T lo[CONFIG_T::n_out_chan],
                      const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE
    typename res_T::value_type merged[CONFIG_T::n_out_chan];
    correction_pixel<T, typename res_T::value_type, src_T, bound_T, CONFIG_T>(stacked, merged, src, lo, hi);
    res_T out;
    PRAGMA_DATA_PACK(out)
    for (unsigned c = 0; c < CONFIG_T::n_out_chan; c++)
        out[c] = merged[c];
    res.write(out);
}

// io_stream, DMR: one pixel (an array of channels) per stream word and input
template <class data0_T, class data1_T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction(hls::stream<data0_T> &data0, hls::stream<data1_T> &data1, hls::stream<res_T> &res,
                const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources], const bound_T lo[CONFIG_T::n_out_chan],
                const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE off
CorrectionStream:
    for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
        #pragma HLS PIPELINE
        data0_T in0 = data0.read();
        data1_T in1 = data1.read();
        typename data0_T::value_type stacked[CONFIG_T::n_in_chan];
        #pragma HLS ARRAY_PARTITION variable = stacked complete
        for (unsigned i = 0; i < CONFIG_T::n_chan0; i++)
            stacked[i] = in0[i];
        for (unsigned j = 0; j < CONFIG_T::n_copy; j++)
            stacked[CONFIG_T::n_chan0 + j] = in1[j];
        correction_write<typename data0_T::value_type, res_T, src_T, bound_T, CONFIG_T>(stacked, res, src, lo, hi);
    }
}

// io_stream, TMR
template <class data0_T, class data1_T, class data2_T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction(hls::stream<data0_T> &data0, hls::stream<data1_T> &data1, hls::stream<data2_T> &data2,
                hls::stream<res_T> &res, const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources],
                const bound_T lo[CONFIG_T::n_out_chan], const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE off
CorrectionStream:
    for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
        #pragma HLS PIPELINE
        data0_T in0 = data0.read();
        data1_T in1 = data1.read();
        data2_T in2 = data2.read();
        typename data0_T::value_type stacked[CONFIG_T::n_in_chan];
        #pragma HLS ARRAY_PARTITION variable = stacked complete
        for (unsigned i = 0; i < CONFIG_T::n_chan0; i++)
            stacked[i] = in0[i];
        for (unsigned j = 0; j < CONFIG_T::n_copy; j++) {
            stacked[CONFIG_T::n_chan0 + j] = in1[j];
            stacked[CONFIG_T::n_chan0 + CONFIG_T::n_copy + j] = in2[j];
        }
        correction_write<typename data0_T::value_type, res_T, src_T, bound_T, CONFIG_T>(stacked, res, src, lo, hi);
    }
}

} // namespace nnet

#endif
