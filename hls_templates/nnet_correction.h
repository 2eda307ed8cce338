// ftflow correction layer for hls4ml: merges each original channel with its duplicated (or triplicated) copies.
//
// Input: n_in_chan channels per pixel (the originals, then the copies); output: n_out_chan channels.
// src[c * n_sources + j] is the input channel of copy j of output channel c (rows padded by repeating the last).
// Policies (bit-exact with flow/correction.py):
//   min   : minimum of the copies (the paper's correction)
//   range : the copy inside [lo[c], hi[c]]; both or neither inside -> minimum (identical copies pass through)
//   vote  : median of three copies (TMR)
// clip   : clamp every result to [lo[c], hi[c]] (Ranger-style range restriction)
// The function stays a separate instance (INLINE off) so its inputs, the copies, remain distinct signals.
#ifndef NNET_CORRECTION_H_
#define NNET_CORRECTION_H_

#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

enum correction_policy { correction_min = 0, correction_range = 1, correction_vote = 2 };

struct correction_config {
    static const unsigned n_pixels = 1;
    static const unsigned n_in_chan = 2;
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

// io_parallel: the whole feature map as one array (pixel-major, channels last)
template <class data_T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction(data_T data[CONFIG_T::n_pixels * CONFIG_T::n_in_chan], res_T res[CONFIG_T::n_pixels * CONFIG_T::n_out_chan],
                const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources], const bound_T lo[CONFIG_T::n_out_chan],
                const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE off
    #pragma HLS PIPELINE
    const unsigned mid = CONFIG_T::n_sources > 2 ? 1 : CONFIG_T::n_sources - 1;
CorrectionPixels:
    for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
        #pragma HLS UNROLL
    CorrectionChannels:
        for (unsigned c = 0; c < CONFIG_T::n_out_chan; c++) {
            #pragma HLS UNROLL
            const unsigned row = c * CONFIG_T::n_sources;
            const unsigned base = p * CONFIG_T::n_in_chan;
            res[p * CONFIG_T::n_out_chan + c] = correction_merge<data_T, bound_T, CONFIG_T>(
                data[base + src[row]], data[base + src[row + mid]], data[base + src[row + CONFIG_T::n_sources - 1]], lo[c],
                hi[c]);
        }
    }
}

// io_stream: one pixel (an array of channels) per stream word
template <class data_T, class res_T, class src_T, class bound_T, typename CONFIG_T>
void correction(hls::stream<data_T> &data, hls::stream<res_T> &res, const src_T src[CONFIG_T::n_out_chan * CONFIG_T::n_sources],
                const bound_T lo[CONFIG_T::n_out_chan], const bound_T hi[CONFIG_T::n_out_chan]) {
    #pragma HLS INLINE off
    const unsigned mid = CONFIG_T::n_sources > 2 ? 1 : CONFIG_T::n_sources - 1;
CorrectionStream:
    for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
        #pragma HLS PIPELINE
        data_T in = data.read();
        res_T out;
        PRAGMA_DATA_PACK(out)
    CorrectionStreamChannels:
        for (unsigned c = 0; c < CONFIG_T::n_out_chan; c++) {
            #pragma HLS UNROLL
            const unsigned row = c * CONFIG_T::n_sources;
            out[c] = correction_merge<typename data_T::value_type, bound_T, CONFIG_T>(
                in[src[row]], in[src[row + mid]], in[src[row + CONFIG_T::n_sources - 1]], lo[c], hi[c]);
        }
        res.write(out);
    }
}

} // namespace nnet

#endif
