// mat_engine: the attention matrix unit ("mat", doc/isa.md 5) executing mat_qk (opcode 0x18) and
// mat_pv (0x19) exactly as doc/isa.md 7.4 / 9 and hw_models/units/mat.py say:
//   mat_qk: S[h,m,l] = tree_sum_k(fp32(Q[m,h,k]) * fp32(K[h/g,l,k])) (x) scale, g = H/HKV,
//           stored fp32 (out_fp32=1) or fp16(S); scores [H,M,L], queries [M,H,D], keys [HKV,L,D] heads
//           k_stride bytes apart.
//   mat_pv: O[m,h,d] = fp16(tree_sum_l(fp32(P[h,m,l]) * fp32(V[h/g,l,d]))); P [H,M,L], out [M,H,D].
// The products are exact in fp32 (fp32_mul of two fp16 values); the reduction is the 7.1 tree over the
// reduction axis (k for qk, l for pv) in blocks of TREE_LANES, by tree_sum_seq with MAT_TIN lanes/cycle.
//
// Microarchitecture (MAT_TIN x MAT_TOUT multipliers):
//   * Rows (h, m) are processed in order h = 0..H-1 (so KV head hk = h/g serves g consecutive heads),
//     m = 0..M-1. Each KV head is read ONCE with one contiguous request (L*D*2 bytes) into an on-chip
//     head buffer (NL x NU banks of 16 fp16 values) and reused by the g*M rows of its group. When two
//     heads fit (l*d <= about MAX_SEQ_LEN*64) the buffer is double-buffered: head hk+1 streams in while
//     head hk computes; else the next head's request goes out once the last step of the previous head has
//     read the buffer. Rows of a head are computed while its rows stream in (a step waits only for the
//     key/value rows it needs).
//   * The per-row operand (a Q row, D*2 bytes, or a P row, L*2 bytes, realigned when it does not start on a
//     32-byte boundary) is read with one request into a ring of row slots (as many as the row buffer holds,
//     at most NSLM = 16; a slot is the smallest power of two of words holding a row): rows are requested
//     up to the ring's depth ahead of the compute (at most TAGD = 16 requests in flight), so the channel
//     latency of each row is hidden. The KV head of a group is requested right after the first row of the
//     group (further rows stream in behind it), so the next (double-buffered) head is prefetched as soon
//     as the ring reaches its group.
//   * One step per cycle: mat_qk: MO keys x MI dims (H*M*ceil(D/MI)*ceil(L/MO) steps); mat_pv: MO
//     output dims x MI keys (H*M*ceil(L/MI)*ceil(D/MO) steps): exactly the compute-cycle formulas of
//     doc/simulator.md; rows and heads follow each other without a gap. Pipeline: buffer read (1) -> lane
//     select (1) -> fp16->fp32 and multiply (1) -> tree_sum_seq -> scale/convert -> mat_packer (contiguous
//     output runs, full beats; the result FIFO and the write FIFO are bypassed when empty; the last
//     entry's partial beat is written with it).
//   * Busy time ~= 1 check cycle + max(steps + first KV head streamed in, memory stream) + ~9 cycles of
//     pipeline after the last step (done in the cycle after the last write is accepted).
// Checks (doc/isa.md 8, in the simulator's order), reported with done/err before any memory traffic:
//   err_code 1: m, heads, kv_heads, l or d is 0;   2: heads % kv_heads != 0;   3: d % 16 != 0;
//            4: k_stride / v_stride not a multiple of 32;   5: kv_heads > 1 and stride < l*d*2;
//            6: an operand range (q/p, kc/vc over all heads, out) is outside one memory region;
//            7: (this implementation's limit) a KV head does not fit the head buffer
//               (ceil(l/NL) * ceil(d/16/NU) > KV_DEPTH, i.e. about l*d <= MAX_SEQ_LEN*128) or a row does
//               not fit a row slot.
//            8: internal self-check failed (FIFO overflow / trees out of step: a design bug, never expected).
module mat_engine import dlavm_pkg::*; (
  input  logic                  clk,
  input  logic                  rst_n,
  input  logic                  start,
  // Only the opcode (7:0) and the mat_* fields are read: the wait mask and the reserved bits are the
  // front end's (decode/legality), so those bits of the instruction word are genuinely unused here.
  /* verilator lint_off UNUSEDSIGNAL */
  input  logic [INSN_BITS-1:0]  insn,
  /* verilator lint_on UNUSEDSIGNAL */
  output logic                  busy,
  output logic                  done,
  output logic                  err,
  output logic [7:0]            err_code,
  output logic                  rd_req_valid,
  input  logic                  rd_req_ready,
  output logic [MEM_AW-1:0]     rd_req_addr,
  output logic [31:0]           rd_req_bytes,
  input  logic                  rd_rsp_valid,
  output logic                  rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  rd_rsp_data,
  input  logic                  rd_rsp_last,
  output logic                  wr_valid,
  input  logic                  wr_ready,
  output logic [MEM_AW-1:0]     wr_addr,
  output logic [PORT_BITS-1:0]  wr_data,
  output logic [PORT_BYTES-1:0] wr_strb
);
  // ------------------------------------------------------------------ sizes
  localparam int MI   = MAT_TIN;                  // multiplier lanes along the reduction axis
  localparam int MO   = MAT_TOUT;                 // parallel outputs (trees)
  localparam int PB   = PORT_BYTES;
  localparam int PBU  = PB / 32;                  // 16-value units per beat
  localparam int PBV  = PB / 2;                   // fp16 values per beat
  localparam int TU   = MI / 16;                 // units per qk step row
  localparam int TOU  = (MO + 15) / 16;         // units per pv step row
  localparam int KWU  = (PBU < 4) ? PBU : 4;      // head-buffer write units per cycle
  localparam int NSL  = PBU / KWU;                // cycles per response beat of a KV head
  localparam int NL   = (MI > MO) ? MI : MO;            // head buffer row banks
  localparam int NU0  = (TU > TOU) ? TU : TOU;
  localparam int NU   = (NU0 > KWU) ? NU0 : KWU;              // head buffer unit banks
  localparam int NBK  = NL * NU;
  localparam int KV_UNITS = MAX_SEQ_LEN * 8;                  // 16-value units of the head buffer
  localparam int KVD0 = KV_UNITS / NBK;
  localparam int KVD  = (KVD0 < 2) ? 2 : KVD0;                // depth of one bank
  localparam int KAW  = $clog2(KVD);
  localparam int LGNL = $clog2(NL);
  localparam int LGNU = $clog2(NU);
  localparam int RBANKS = (MI > PBV) ? MI / PBV : 1;        // row buffer banks (beat-wide words)
  localparam int RB0  = (NL * KVD) / PBV + 2;                 // beats of the longest row (+ realign)
  localparam int RBEATS = 1 << $clog2(RB0 < RBANKS ? RBANKS : RB0);
  localparam int RDEP = 2 * RBEATS / RBANKS;                  // two row slots
  localparam int RAW  = $clog2(RDEP);
  localparam int RSW  = $clog2(RBANKS * PBV);                 // log2 values of one row-buffer read
  localparam int RBW  = $clog2(RBEATS) + 1;                   // beat index inside a row slot
  localparam int RFD  = 32;                                   // result credits (FIFO depth)
  localparam int CW   = $clog2(RFD) + 1;
  localparam int NVW  = $clog2(MO + 1);
  localparam int NKW  = $clog2(MI + 1);
  localparam int SLW  = (NSL > 1) ? $clog2(NSL) : 1;
  localparam int NSLM = 16;                                   // row slots at most (ring of rows)
  localparam int SLB  = $clog2(NSLM);
  localparam int TAGD = 16;                                   // read requests in flight (harness: 16)
  localparam int TAGW = 1 + SLB + 4 + 32;
  localparam int SBW  = 1 + NVW + 1 + MEM_AW;
  localparam int RFW  = MO * 32 + SBW;

  // ------------------------------------------------------------------ state
  typedef enum logic [2:0] {S_IDLE, S_CHECK, S_RUN, S_DONE} state_t;
  state_t st;

  // latched fields
  logic              f_qk, f_fp32;
  logic              f_pp;                    // two KV heads fit the head buffer: double-buffer them
  logic [MEM_AW-1:0] f_a, f_kv, f_out;        // q|p, kc|vc, out (bytes)
  logic [31:0]       f_m, f_h, f_hkv, f_l, f_d, f_stride, f_scale;

  function automatic logic [MEM_AW-1:0] baddr(input logic [31:0] field);
    return MEM_AW'({field, 5'b00000});
  endfunction

  function automatic logic [47:0] sat48(input logic [95:0] v);
    return (|v[95:47]) ? 48'h8000_0000_0000 : v[47:0];
  endfunction

  function automatic logic [47:0] mul48(input logic [47:0] a, input logic [47:0] b);
    return sat48(96'(a) * 96'(b));
  endfunction

  // [s, e) inside [base, base + size): unsigned differences (s < base wraps to a huge value)
  function automatic logic in_one(input logic [63:0] s, input logic [63:0] e, input logic [63:0] base,
                                  input logic [63:0] size);
    return (s - base < size) && (e - base <= size);
  endfunction

  function automatic logic in_region(input logic [MEM_AW-1:0] a, input logic [47:0] n);
    logic [63:0] s, e;
    s = 64'(a);
    e = 64'(a) + 64'(n);
    return in_one(s, e, 64'(HBM_BASE), 64'(HBM_SIZE)) || in_one(s, e, 64'(DDR_BASE), 64'(DDR_SIZE))
        || in_one(s, e, 64'(SRAM_BASE), 64'(SRAM_SIZE));
  endfunction

  // ------------------------------------------------------------------ check phase
  logic [3:0]  ck_cnt;
  logic [32:0] dv_rem;
  logic [31:0] dv_q;
  logic [5:0]  dv_i;
  logic        dv_run;
  logic [MEM_AW-1:0] p_hd2;
  logic [32:0] l_grp, rowb_33;
  logic [47:0] p_mh;
  logic [36:0] p_ld2;                      // bytes of a KV head (it fits the head buffer: < 2^32)
  // the check's products and operand spans, combinational on the latched fields
  logic [47:0] k_mh, k_ld2, k_k1s, k_kvneed, k_aspan, k_ospan, k_kvspan;
  always_comb begin
    k_mh     = sat48(96'(f_m) * 96'(f_h));
    k_ld2    = sat48(96'(f_l) * 96'(f_d) * 96'd2);
    k_k1s    = (f_hkv == '0) ? '0 : sat48(96'(f_hkv - 1'b1) * 96'(f_stride));
    k_kvneed = sat48(96'(l_grp) * 96'(f_dub));
    k_aspan  = mul48(k_mh, f_qk ? 48'(f_d) << 1 : 48'(f_l) << 1);
    k_ospan  = f_qk ? mul48(k_mh, 48'(f_l) << (f_fp32 ? 2 : 1)) : mul48(k_mh, 48'(f_d) << 1);
    k_kvspan = sat48(96'(k_k1s) + 96'(k_ld2));
  end
  logic [47:0] p_gm;
  logic [31:0] f_du, f_dub;

  logic [5:0] h_msb;
  // the restoring division heads / kv_heads, up to 8 quotient bits per check cycle (starting in ck 0)
  logic [32:0] dvn_rem, dv_r2;
  logic [31:0] dvn_q;
  logic [5:0]  dvn_i;
  logic        dvn_run;
  always_comb begin
    dvn_rem = (ck_cnt == '0) ? '0 : dv_rem;
    dvn_q   = (ck_cnt == '0) ? '0 : dv_q;
    dvn_i   = (ck_cnt == '0) ? h_msb : dv_i;
    dvn_run = (ck_cnt == '0) ? (f_hkv != '0) : dv_run;
    dv_r2   = '0;
    for (int j = 0; j < 8; j++) begin
      if (dvn_run) begin
        dv_r2 = {dvn_rem[31:0], f_h[dvn_i[4:0]]};
        if (dv_r2 >= 33'(f_hkv)) begin
          dvn_rem = dv_r2 - 33'(f_hkv);
          dvn_q[dvn_i[4:0]] = 1'b1;
        end else begin
          dvn_rem = dv_r2;
        end
        if (dvn_i == '0) dvn_run = 1'b0;
        dvn_i = dvn_i - 1'b1;
      end
    end
  end
  // words of one row slot: the smallest power of two holding a row (rowb_33 beats, RBANKS per word)
  logic [$clog2(RAW+1)-1:0] sh_w;
  always_comb begin
    logic [47:0] words;
    words = (48'(rowb_33) + 48'(RBANKS - 1)) >> $clog2(RBANKS);
    sh_w = '0;
    for (int i = RAW; i >= 0; i--) if ((48'd1 << i) >= words) sh_w = ($clog2(RAW+1))'(i);
  end
  always_comb begin
    h_msb = '0;
    for (int i = 0; i < 32; i++) if (f_h[i]) h_msb = 6'(i);
  end

  logic [31:0] row_len;                                              // bytes of one Q (qk) / P (pv) row
  assign row_len = f_qk ? {f_d[30:0], 1'b0} : {f_l[30:0], 1'b0};
  assign f_du  = {4'b0, f_d[31:4]};
  assign l_grp   = (33'(f_l) + 33'(NL - 1)) >> LGNL;                 // ceil(l / NL)
  assign rowb_33 = (33'(row_len) + 33'(32 + PB - 1)) >> $clog2(PB);  // beats of a row slot (+ realign)
  assign f_dub = (f_du + 32'(NU - 1)) >> LGNU;

  // ------------------------------------------------------------------ run-phase registers
  // row requester
  logic [47:0]       rq_r;                 // next row to request
  logic [31:0]       rq_m;
  logic [MEM_AW-1:0] rq_hbase, rq_off;     // qk: (m*H + h)*D*2 ; pv: (h*M + m)*L*2
  // kv requester
  logic [31:0]       kq_hk;
  logic [47:0]       kq_first;             // first row of head kq_hk
  logic [MEM_AW-1:0] kq_off;
  // compute
  logic [47:0]       c_r;
  logic [31:0]       c_m, c_gi, c_hk;
  logic [MEM_AW-1:0] c_hbase, c_off;       // pv: out row offset (m*H + h)*D*2
  logic [31:0]       c_lt, c_cu, c_dv, c_rgb;
  // slots: 0 free, 1 requested, 2 full
  logic [1:0]        slot_st [NSLM];
  logic [SLB-1:0]    sl_mask;              // slots in use - 1 (a power of two minus one)
  logic [$clog2(RAW+1)-1:0] sl_sh;         // log2 words of one slot
  logic [SLB-1:0]    rq_slot, c_slot;
  // head buffer writer
  logic [31:0]       kw_hk, kw_l, kw_u, kw_rgb, kw_left, kw_rows;
  logic              kw_valid;             // kw_hk names a head being / been written
  // responses
  logic              rsp_first;            // next response beat is the first of its request
  logic [RBW-1:0]    rb_i;
  logic [PORT_BITS-1:0] rb_prev;
  logic              tail_pend;
  logic [SLB-1:0]    tail_slot;
  logic [3:0]        tail_o;
  logic [RBW-1:0]    tail_word;
  logic [PORT_BITS-1:0] tail_data;
  logic              kv_hold;
  logic [SLW-1:0]    kv_sl;
  logic [PORT_BITS-1:0] kv_hold_data;

  // ------------------------------------------------------------------ FIFOs
  logic            tg_push, tg_pop, tg_empty, tg_full;
  logic [TAGW-1:0] tg_din, tg_dout;
  logic [$clog2(TAGD):0] tg_count;
  logic            sb_push, sb_pop, sb_empty, sb_full;
  logic [SBW-1:0]  sb_din, sb_dout;
  logic [CW-1:0]   sb_count;
  logic            rf_push, rf_pop, rf_empty, rf_full;
  logic [RFW-1:0]  rf_din, rf_dout;
  logic [CW-1:0]   rf_count;
  logic            clr;

  assign clr = (st == S_CHECK);

  mat_fifo #(.W(TAGW), .DEPTH(TAGD)) u_tag (
    .clk, .rst_n, .clear(clr), .push(tg_push), .din(tg_din), .pop(tg_pop), .dout(tg_dout),
    .empty(tg_empty), .full(tg_full), .count(tg_count));
  mat_fifo #(.W(SBW), .DEPTH(RFD)) u_sb (
    .clk, .rst_n, .clear(clr), .push(sb_push), .din(sb_din), .pop(sb_pop), .dout(sb_dout),
    .empty(sb_empty), .full(sb_full), .count(sb_count));
  mat_fifo #(.W(RFW), .DEPTH(RFD)) u_rf (
    .clk, .rst_n, .clear(clr), .push(rf_push), .din(rf_din), .pop(rf_pop), .dout(rf_dout),
    .empty(rf_empty), .full(rf_full), .count(rf_count));

  // ------------------------------------------------------------------ read requests
  logic        row_req_ok, kv_req_ok, req_fire, req_is_kv;
  logic [MEM_AW-1:0] rq_byte;
  logic [31:0] row_bytes_q, row_bytes_p;
  logic [1:0]  rq_slot_st;

  assign rq_byte     = f_a + rq_off;
  assign row_bytes_q = row_len;
  assign row_bytes_p = (32'(rq_byte[4:0]) + row_len + 32'd31) & ~32'd31;
  assign rq_slot     = SLB'(rq_r) & sl_mask;
  assign c_slot      = SLB'(c_r) & sl_mask;
  assign rq_slot_st  = slot_st[rq_slot];
  assign row_req_ok  = (st == S_RUN) && (rq_r < p_mh) && (rq_slot_st == 2'd0);
  // the next KV head goes out when its buffer half is free (double-buffered: compute has finished the head
  // two before it; else the previous head) and the first row of its group has been requested (so the small
  // row responses are not queued behind the large KV one)
  assign kv_req_ok   = (st == S_RUN) && (kq_hk < f_hkv) && (f_pp ? (kq_hk <= c_hk + 1'b1) : (kq_hk == c_hk))
                    && (rq_r > kq_first);
  // the KV head goes as soon as it may (after the first row of its group): the rows that follow are
  // prefetched behind it
  assign req_is_kv   = kv_req_ok;
  assign rd_req_valid = !tg_full && (row_req_ok || kv_req_ok);
  assign req_fire    = rd_req_valid && rd_req_ready;
  always_comb begin
    if (!req_is_kv) begin
      rd_req_addr  = {rq_byte[MEM_AW-1:5], 5'b00000};
      rd_req_bytes = f_qk ? row_bytes_q : row_bytes_p;
    end else begin
      rd_req_addr  = f_kv + kq_off;
      rd_req_bytes = p_ld2[31:0];
    end
  end
  assign tg_push = req_fire;
  assign tg_din  = {req_is_kv, rq_slot, (f_qk || req_is_kv) ? 4'd0 : rq_byte[4:1], kq_hk};

  // ------------------------------------------------------------------ responses
  logic            t_kv;
  logic [SLB-1:0]  t_slot;
  logic [3:0]      t_o;
  logic [31:0]     t_hk;
  logic            rsp_fire;
  assign {t_kv, t_slot, t_o, t_hk} = tg_dout;
  assign rd_rsp_ready = !tail_pend && !kv_hold;
  assign rsp_fire = rd_rsp_valid && rd_rsp_ready;
  assign tg_pop   = rsp_fire && rd_rsp_last;

  // row buffer write port
  logic                 rw_we;
  logic [RBW-1:0]       rw_word;      // beat index inside the slot
  logic [SLB-1:0]       rw_slot;
  logic [PORT_BITS-1:0] rw_data;
  logic                 rw_done;      // the slot's row is complete after this write
  always_comb begin
    rw_we = 1'b0; rw_word = rb_i; rw_slot = t_slot; rw_data = rd_rsp_data; rw_done = 1'b0;
    if (tail_pend) begin
      rw_data = PORT_BITS'({{PORT_BITS{1'b0}}, tail_data} >> {tail_o, 4'd0});
      rw_we   = 1'b1; rw_word = tail_word; rw_slot = tail_slot;
      rw_done = 1'b1;
    end else if (rsp_fire && !t_kv) begin
      if (t_o == 4'd0) begin
        rw_we = 1'b1; rw_done = rd_rsp_last;
      end else begin
        rw_data = PORT_BITS'({rd_rsp_data, rb_prev} >> {t_o, 4'd0});
        rw_we   = (rb_i != '0); rw_word = rb_i - 1'b1;
      end
    end
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      rb_i <= '0; rb_prev <= '0; tail_pend <= 1'b0; tail_slot <= '0; tail_o <= '0;
      tail_word <= '0; tail_data <= '0; rsp_first <= 1'b1;
    end else if (clr) begin
      rb_i <= '0; tail_pend <= 1'b0; rsp_first <= 1'b1;
    end else begin
      if (tail_pend) tail_pend <= 1'b0;
      if (rsp_fire) begin
        rsp_first <= rd_rsp_last;
        if (!t_kv) begin
          rb_i    <= rd_rsp_last ? '0 : rb_i + 1'b1;
          rb_prev <= rd_rsp_data;
          if (rd_rsp_last && t_o != 4'd0) begin
            tail_pend <= 1'b1; tail_slot <= t_slot; tail_o <= t_o; tail_word <= rb_i; tail_data <= rd_rsp_data;
          end
        end
      end
    end
  end

  // ------------------------------------------------------------------ head buffer writer
  logic                 kvw_act;               // a slice is written this cycle
  logic [PORT_BITS-1:0] kvw_src;
  logic [SLW-1:0]       kvw_sl;
  logic                 kvw_first;
  logic [31:0]          n_l, n_u, n_rgb, n_left, n_rows;
  logic                 bk_we   [NBK];
  logic [KAW-1:0]       bk_wa   [NBK];
  logic [255:0]         bk_wd   [NBK];

  assign kvw_act   = kv_hold || (rsp_fire && t_kv);
  assign kvw_src   = kv_hold ? kv_hold_data : rd_rsp_data;
  assign kvw_sl    = kv_hold ? kv_sl : '0;
  assign kvw_first = !kv_hold && rsp_first;

  logic [KAW-1:0] kw_base;      // buffer half of the head being written
  assign kw_base = (f_pp && (kvw_first ? t_hk[0] : kw_hk[0])) ? KAW'(KVD / 2) : '0;

  always_comb begin
    logic [31:0] l, u, rgb, left, rows;
    l    = kvw_first ? '0 : kw_l;
    u    = kvw_first ? '0 : kw_u;
    rgb  = kvw_first ? '0 : kw_rgb;
    left = kvw_first ? p_ld2[36:5] : kw_left;
    rows = kvw_first ? '0 : kw_rows;
    for (int b = 0; b < NBK; b++) begin
      bk_we[b] = 1'b0; bk_wa[b] = '0; bk_wd[b] = '0;
    end
    for (int k = 0; k < KWU; k++) begin
      if (kvw_act && left != '0) begin
        bk_we[int'(l[LGNL-1:0]) * NU + int'(u[LGNU-1:0])] = 1'b1;
        bk_wa[int'(l[LGNL-1:0]) * NU + int'(u[LGNU-1:0])] = KAW'(rgb + (u >> LGNU)) + kw_base;
        bk_wd[int'(l[LGNL-1:0]) * NU + int'(u[LGNU-1:0])] = kvw_src[256 * (int'(kvw_sl) * KWU + k) +: 256];
        left = left - 1'b1;
        if (u + 1'b1 == f_du) begin
          u = '0;
          l = l + 1'b1;
          rows = rows + 1'b1;
          if (l[LGNL-1:0] == '0) rgb = rgb + f_dub;
        end else begin
          u = u + 1'b1;
        end
      end
    end
    n_l = l; n_u = u; n_rgb = rgb; n_left = left; n_rows = rows;
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      kw_hk <= '0; kw_l <= '0; kw_u <= '0; kw_rgb <= '0; kw_left <= '0; kw_rows <= '0; kw_valid <= 1'b0;
      kv_hold <= 1'b0; kv_sl <= '0; kv_hold_data <= '0;
    end else if (clr) begin
      kw_valid <= 1'b0; kv_hold <= 1'b0; kv_sl <= '0; kw_rows <= '0;
    end else begin
      if (kvw_act) begin
        kw_l <= n_l; kw_u <= n_u; kw_rgb <= n_rgb; kw_left <= n_left; kw_rows <= n_rows;
      end
      if (kvw_first && kvw_act) begin
        kw_hk <= t_hk; kw_valid <= 1'b1;
      end
      if (NSL > 1) begin
        if (!kv_hold && rsp_fire && t_kv) begin
          kv_hold <= 1'b1; kv_sl <= SLW'(1); kv_hold_data <= rd_rsp_data;
        end else if (kv_hold) begin
          if (int'(kv_sl) == NSL - 1) kv_hold <= 1'b0;
          kv_sl <= kv_sl + 1'b1;
        end
      end
    end
  end

  // ------------------------------------------------------------------ compute step (stage 0)
  logic        slot_full, kv_ready, step_ok, last_in, last_out, credit_ok, step;
  logic [31:0] need, v0r, unit0;
  logic [NVW-1:0] nvals;
  logic [NKW-1:0] nk;
  logic        new_run;
  logic [MEM_AW-1:0] run_addr;
  logic [KAW-1:0] kv_raddr;
  logic [RAW-1:0] rb_raddr;

  assign slot_full = (slot_st[c_slot] == 2'd2);
  always_comb begin
    if (f_qk) begin
      need     = (c_lt + 32'(MO) >= f_l) ? f_l : c_lt + 32'(MO);
      v0r      = {c_cu[27:0], 4'b0000};
      last_in  = (v0r + 32'(MI) >= f_d);
      last_out = (c_lt + 32'(MO) >= f_l);
      unit0    = c_cu;
      nvals    = (f_l - c_lt > 32'(MO)) ? NVW'(MO) : NVW'(f_l - c_lt);
      nk       = (f_d - v0r > 32'(MI)) ? NKW'(MI) : NKW'(f_d - v0r);
      new_run  = (c_r == '0) && (c_lt == '0);
      run_addr = f_out;
    end else begin
      need     = (c_lt + 32'(MI) >= f_l) ? f_l : c_lt + 32'(MI);
      v0r      = c_lt;
      last_in  = (c_lt + 32'(MI) >= f_l);
      last_out = (c_dv + 32'(MO) >= f_d);
      unit0    = c_dv >> 4;
      nvals    = (f_d - c_dv > 32'(MO)) ? NVW'(MO) : NVW'(f_d - c_dv);
      nk       = (f_l - c_lt > 32'(MI)) ? NKW'(MI) : NKW'(f_l - c_lt);
      new_run  = (c_dv == '0);
      run_addr = f_out + c_off;
    end
  end
  // the rows a step needs are in: the writer is on this head and has them, or has moved past it
  assign kv_ready  = kw_valid && (((kw_hk == c_hk) && (kw_rows >= need)) || (kw_hk > c_hk));
  assign credit_ok = !last_in || (32'(sb_count) + 32'(rf_count) < 32'(RFD));
  assign step_ok   = (st == S_RUN) && (c_r < p_mh) && slot_full && kv_ready && credit_ok;
  assign step      = step_ok;
  assign kv_raddr  = KAW'(c_rgb + (unit0 >> LGNU)) + ((f_pp && c_hk[0]) ? KAW'(KVD / 2) : '0);
  assign rb_raddr  = (RAW'(c_slot) << sl_sh) | RAW'(v0r >> RSW);

  assign sb_push = step && last_in;
  assign sb_din  = {row_end && (c_r + 1'b1 == p_mh), nvals, new_run, run_addr};   // last entry first

  // ------------------------------------------------------------------ state machine and counters
  logic [47:0] rq_r_n;
  logic row_end, ovf, ovf_seen;
  assign row_end = step && last_in && last_out;

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      st <= S_IDLE; busy <= 1'b0; done <= 1'b0; err <= 1'b0; err_code <= '0;
      f_qk <= 1'b0; f_fp32 <= 1'b0; f_pp <= 1'b0; f_a <= '0; f_kv <= '0; f_out <= '0;
      f_m <= '0; f_h <= '0; f_hkv <= '0; f_l <= '0; f_d <= '0; f_stride <= '0; f_scale <= '0;
      ck_cnt <= '0; dv_rem <= '0; dv_q <= '0; dv_i <= '0; dv_run <= 1'b0;
      p_mh <= '0; p_ld2 <= '0; p_hd2 <= '0;
      p_gm <= '0;
      rq_r <= '0; rq_m <= '0; rq_hbase <= '0; rq_off <= '0;
      kq_hk <= '0; kq_first <= '0; kq_off <= '0;
      c_r <= '0; c_m <= '0; c_gi <= '0; c_hk <= '0; c_hbase <= '0; c_off <= '0;
      c_lt <= '0; c_cu <= '0; c_dv <= '0; c_rgb <= '0;
      for (int s = 0; s < NSLM; s++) slot_st[s] <= '0;
      ovf_seen <= 1'b0; sl_mask <= '0; sl_sh <= '0;
    end else begin
      done <= 1'b0;
      case (st)
        S_IDLE, S_DONE: begin
          busy <= 1'b0;
          if (start) begin
            st       <= S_CHECK;
            busy     <= 1'b1;
            err      <= 1'b0;
            err_code <= '0;
            f_qk     <= (insn[7:0] == OP_MAT_QK);
            f_fp32   <= (insn[7:0] == OP_MAT_QK) && insn[F_MAT_QK_OUT_FP32_LO];
            f_a      <= baddr(insn[F_MAT_QK_Q_LO +: 32]);     // q / p (same word)
            f_kv     <= baddr(insn[F_MAT_QK_KC_LO +: 32]);    // kc / vc
            f_out    <= baddr(insn[F_MAT_QK_OUT_LO +: 32]);
            f_m      <= insn[F_MAT_QK_M_LO +: 32];
            f_h      <= insn[F_MAT_QK_HEADS_LO +: 32];
            f_hkv    <= insn[F_MAT_QK_KV_HEADS_LO +: 32];
            f_l      <= insn[F_MAT_QK_L_LO +: 32];
            f_d      <= insn[F_MAT_QK_D_LO +: 32];
            f_stride <= insn[F_MAT_QK_K_STRIDE_LO +: 32];
            f_scale  <= insn[F_MAT_QK_SCALE_LO +: 32];
            ck_cnt   <= '0;
          end
        end
        S_CHECK: begin
          // the checks are combinational on the latched fields (k_* below); the decision is taken in the
          // first check cycle, or once the division heads / kv_heads (8 quotient bits per cycle) is done
          ck_cnt <= (ck_cnt == 4'd15) ? ck_cnt : ck_cnt + 1'b1;
          dv_rem <= dvn_rem; dv_q <= dvn_q; dv_i <= dvn_i; dv_run <= dvn_run;
          if (!dvn_run) begin
            logic [7:0] code;
            if ((f_m == '0) || (f_h == '0) || (f_hkv == '0) || (f_l == '0) || (f_d == '0)) code = 8'd1;
            else if (dvn_rem != '0)                       code = 8'd2;
            else if (f_d[3:0] != 4'd0)                    code = 8'd3;
            else if (f_stride[4:0] != 5'd0)               code = 8'd4;
            else if (f_hkv > 32'd1 && 48'(f_stride) < k_ld2) code = 8'd5;
            else if (!in_region(f_a, k_aspan) || !in_region(f_kv, k_kvspan) || !in_region(f_out, k_ospan))
                                                          code = 8'd6;
            else if (k_kvneed > 48'(KVD) || 48'(rowb_33) > 48'(RBEATS)) code = 8'd7;
            else                                          code = 8'd0;
            if (code != 8'd0) begin
              st <= S_DONE; busy <= 1'b0; done <= 1'b1; err <= 1'b1; err_code <= code;
            end else begin
              st <= S_RUN;
              p_mh       <= k_mh;
              p_ld2      <= k_ld2[36:0];
              p_hd2      <= MEM_AW'(sat48(96'(f_h) * 96'(f_d) * 96'd2));
              p_gm       <= mul48(48'(dvn_q), 48'(f_m));
              f_pp       <= (k_kvneed <= 48'(KVD / 2));
              sl_sh   <= sh_w;
              sl_mask <= ((RDEP >> sh_w) >= NSLM) ? SLB'(NSLM - 1) : SLB'((RDEP >> sh_w) - 1);
              ovf_seen <= 1'b0;
              rq_r <= '0; rq_m <= '0; rq_hbase <= '0; rq_off <= '0;
              kq_hk <= '0; kq_first <= '0; kq_off <= '0;
              c_r <= '0; c_m <= '0; c_gi <= '0; c_hk <= '0; c_hbase <= '0; c_off <= '0;
              c_lt <= '0; c_cu <= '0; c_dv <= '0; c_rgb <= '0;
              for (int s = 0; s < NSLM; s++) slot_st[s] <= '0;
            end
          end
        end
        S_RUN: begin
          // row requests
          if (req_fire && !req_is_kv) begin
            rq_r <= rq_r_n;
            if (f_qk) begin
              if (rq_m + 1'b1 == f_m) begin
                rq_m <= '0;
                rq_hbase <= rq_hbase + MEM_AW'({f_d, 1'b0});
                rq_off   <= rq_hbase + MEM_AW'({f_d, 1'b0});
              end else begin
                rq_m <= rq_m + 1'b1;
                rq_off <= rq_off + MEM_AW'(p_hd2);
              end
            end else begin
              rq_off <= rq_off + MEM_AW'({f_l, 1'b0});
            end
          end
          if (req_fire && req_is_kv) begin
            kq_hk    <= kq_hk + 1'b1;
            kq_first <= kq_first + p_gm;
            kq_off   <= kq_off + MEM_AW'(f_stride);
          end
          // slots
          for (int s = 0; s < NSLM; s++) begin
            if (req_fire && !req_is_kv && rq_slot == SLB'(s)) slot_st[s] <= 2'd1;
            else if (rw_we && rw_done && rw_slot == SLB'(s)) slot_st[s] <= 2'd2;
            else if (row_end && c_slot == SLB'(s)) slot_st[s] <= 2'd0;
          end
          // compute counters
          if (step) begin
            if (!last_in) begin
              if (f_qk) c_cu <= c_cu + 32'(TU);
              else begin
                c_lt <= c_lt + 32'(MI);
                if (((c_lt + 32'(MI)) & 32'(NL - 1)) == '0) c_rgb <= c_rgb + f_dub;
              end
            end else if (!last_out) begin
              if (f_qk) begin
                c_cu <= '0;
                c_lt <= c_lt + 32'(MO);
                if (((c_lt + 32'(MO)) & 32'(NL - 1)) == '0) c_rgb <= c_rgb + f_dub;
              end else begin
                c_lt <= '0; c_rgb <= '0;
                c_dv <= c_dv + 32'(MO);
              end
            end else begin
              c_cu <= '0; c_lt <= '0; c_rgb <= '0; c_dv <= '0;
              c_r <= c_r + 1'b1;
              if (c_m + 1'b1 == f_m) begin
                c_m <= '0;
                c_hbase <= c_hbase + MEM_AW'({f_d, 1'b0});
                c_off   <= c_hbase + MEM_AW'({f_d, 1'b0});
                if (c_gi + 1'b1 == dv_q) begin
                  c_gi <= '0;
                  c_hk <= c_hk + 1'b1;
                end else begin
                  c_gi <= c_gi + 1'b1;
                end
              end else begin
                c_m <= c_m + 1'b1;
                c_off <= c_off + MEM_AW'(p_hd2);
              end
            end
          end
          if (ovf) ovf_seen <= 1'b1;
          if (fin) begin
            st <= S_DONE; busy <= 1'b0; done <= 1'b1;
            if (ovf_seen || ovf) begin
              err <= 1'b1; err_code <= 8'd8;
            end
          end
        end
        default: st <= S_IDLE;
      endcase
    end
  end
  assign rq_r_n = rq_r + 1'b1;

  // ------------------------------------------------------------------ buffers
  logic [255:0] kv_rd [NBK];
  for (genvar b = 0; b < NBK; b++) begin : g_kvbank
    mat_ram #(.W(256), .DEPTH(KVD), .AW(KAW)) u_bank (
      .clk, .we(bk_we[b]), .waddr(bk_wa[b]), .wdata(bk_wd[b]),
      .re(step), .raddr(kv_raddr), .rdata(kv_rd[b]));
  end

  logic [PORT_BITS-1:0] rb_rd [RBANKS];
  for (genvar b = 0; b < RBANKS; b++) begin : g_rbank
    logic [RAW-1:0] wa;
    assign wa = (RAW'(rw_slot) << sl_sh) | RAW'(rw_word >> $clog2(RBANKS));
    mat_ram #(.W(PORT_BITS), .DEPTH(RDEP), .AW(RAW)) u_row (
      .clk, .we(rw_we && (RBANKS == 1 || int'(rw_word) % RBANKS == b)), .waddr(wa), .wdata(rw_data),
      .re(step), .raddr(rb_raddr), .rdata(rb_rd[b]));
  end

  // ------------------------------------------------------------------ stage 1: lane select
  logic            s1_v, s1_first, s1_last, s1_qk;
  logic [LGNL-1:0] s1_ib;
  logic [LGNU-1:0] s1_jb;
  logic [3:0]      s1_voff;
  logic [RSW-1:0]  s1_so;                  // value offset in the row-buffer read (< RBANKS*PBV)
  logic [NKW-1:0]  s1_nk;

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      s1_v <= 1'b0; s1_first <= 1'b0; s1_last <= 1'b0; s1_qk <= 1'b0; s1_ib <= '0; s1_jb <= '0;
      s1_voff <= '0; s1_so <= '0; s1_nk <= '0;
    end else begin
      s1_v     <= step;
      s1_first <= f_qk ? (c_cu == '0) : (c_lt == '0);
      s1_last  <= last_in;
      s1_qk    <= f_qk;
      s1_ib    <= c_lt[LGNL-1:0];
      s1_jb    <= unit0[LGNU-1:0];
      s1_voff  <= c_dv[3:0];
      s1_so    <= RSW'(v0r);
      s1_nk    <= nk;
    end
  end

  // The operands of a step, selected as a few shared shifts rather than one select per product (every
  // index stays inside its array: c_lt steps by MO or MI, which divide NL, so s1_ib + o < NL and
  // s1_ib + k < NL; a unit offset plus the units a step spans stays below NU; s1_so + k < RBANKS*PBV):
  //   a:  value s1_so + k of the row-buffer read;
  //   qk: key o is head-buffer row s1_ib + o, its value k at unit s1_jb + k/16, lane k%16;
  //   pv: key k is row s1_ib + k, output o its value 16*s1_jb + s1_voff + o.
  // So the NL rows are rotated by s1_ib (row i of kv_rot is row s1_ib + i), and each row shifted by the
  // value offset (16*s1_jb, and s1_voff for pv): qk takes value k of row o, pv value o of row k.
  localparam int RWB = NU * 256;                              // bits of a head-buffer row (NU units)
  logic [RBANKS*PORT_BITS-1:0] rb_cat;
  logic [15:0] a_sel [MI];
  logic [15:0] b_sel [MO][MI];
  logic [NL*RWB-1:0] kv_rot;
  logic [RWB-1:0]    kv_row [NL];
  logic [LGNU+3:0]   s1_vo;                                   // value offset in a row
  assign s1_vo = {s1_jb, s1_qk ? 4'd0 : s1_voff};
  always_comb begin
    for (int b = 0; b < RBANKS; b++) rb_cat[b*PORT_BITS +: PORT_BITS] = rb_rd[b];
    for (int k = 0; k < MI; k++) a_sel[k] = rb_cat[{s1_so + RSW'(k), 4'd0} +: 16];
    for (int b = 0; b < NBK; b++) kv_rot[256*b +: 256] = kv_rd[b];   // bank b: row b / NU, unit b % NU
    for (int i = 0; i < LGNL; i++)
      if (s1_ib[i]) kv_rot = (NL*RWB)'({kv_rot, kv_rot} >> ((1 << i) * RWB));
    for (int i = 0; i < NL; i++) kv_row[i] = kv_rot[RWB*i +: RWB] >> {s1_vo, 4'd0};
    for (int o = 0; o < MO; o++)
      for (int k = 0; k < MI; k++)
        b_sel[o][k] = s1_qk ? kv_row[o][16*k +: 16] : kv_row[k][16*o +: 16];
  end

  // ------------------------------------------------------------------ stage 2: convert and multiply
  logic           s2_v, s2_first, s2_last;
  logic [15:0]    s2_a [MI];
  logic [15:0]    s2_b [MO][MI];
  logic [MI-1:0] s2_km;
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      s2_v <= 1'b0; s2_first <= 1'b0; s2_last <= 1'b0; s2_km <= '0;
    end else begin
      s2_v <= s1_v; s2_first <= s1_first; s2_last <= s1_last;
      for (int k = 0; k < MI; k++) s2_km[k] <= (k < int'(s1_nk));
    end
  end
  always_ff @(posedge clk) begin
    if (s1_v) begin
      s2_a <= a_sel;
      s2_b <= b_sel;
    end
  end

  logic [31:0] a32 [MI];
  logic [31:0] prod [MO][MI];
  for (genvar k = 0; k < MI; k++) begin : g_acv
    fp16_to_fp32 u_cv (.a(s2_a[k]), .y(a32[k]));
  end
  for (genvar o = 0; o < MO; o++) begin : g_mo
    for (genvar k = 0; k < MI; k++) begin : g_mk
      logic [31:0] b32;
      fp16_to_fp32 u_cv (.a(s2_b[o][k]), .y(b32));
      fp32_mul u_mul (.a(a32[k]), .b(b32), .y(prod[o][k]));
    end
  end

  // ------------------------------------------------------------------ stage 3: reduction
  logic                s3_v, s3_first, s3_last;
  logic [MO-1:0][MI*32-1:0] s3_p;          // packed: registers, not a memory of MO*MI write ports
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      s3_v <= 1'b0; s3_first <= 1'b0; s3_last <= 1'b0;
    end else begin
      s3_v <= s2_v; s3_first <= s2_first; s3_last <= s2_last;
    end
  end
  always_ff @(posedge clk) begin
    if (s2_v) begin
      for (int o = 0; o < MO; o++)
        for (int k = 0; k < MI; k++)
          s3_p[o][32*k +: 32] <= s2_km[k] ? prod[o][k] : 32'h0000_0000;   // lanes past the end: +0
    end
  end

  logic [MO-1:0] t_valid;
  logic [31:0]     t_sum [MO];
  for (genvar o = 0; o < MO; o++) begin : g_tree
    tree_sum_seq #(.L(MI), .T(TREE_LANES)) u_tree (
      .clk, .rst_n, .in_valid(s3_v), .in_first(s3_first), .in_last(s3_last), .in_lanes(s3_p[o]),
      .out_valid(t_valid[o]), .out_sum(t_sum[o]));
  end

  // ------------------------------------------------------------------ epilogue: scale, convert
  logic [MO*32-1:0] res_vals;
  for (genvar o = 0; o < MO; o++) begin : g_epi
    logic [31:0] sc, cin;
    logic [15:0] h16;
    fp32_mul u_sc (.a(t_sum[o]), .b(f_scale), .y(sc));
    assign cin = f_qk ? sc : t_sum[o];
    fp32_to_fp16 u_h (.a(cin), .y(h16));
    assign res_vals[32*o +: 32] = (f_qk && f_fp32) ? sc : {16'h0000, h16};
  end
  logic pk_ready;
  // results go to the packer directly while the result FIFO is empty and the packer takes them
  assign sb_pop  = t_valid[0];
  assign rf_din  = {res_vals, sb_dout};
  assign rf_push = t_valid[0] && !(rf_empty && pk_ready);

  // ------------------------------------------------------------------ output packer
  logic pk_idle, fin, drained;
  logic [MO*32-1:0] pk_vals;
  logic [NVW-1:0]     pk_n;
  logic               pk_new, pk_last;
  logic [MEM_AW-1:0]  pk_addr;
  assign {pk_vals, pk_last, pk_n, pk_new, pk_addr} = rf_empty ? rf_din : rf_dout;
  assign rf_pop  = !rf_empty && pk_ready;
  // nothing left but (at most) the last result, which leaves the trees in this cycle
  assign drained = (c_r >= p_mh) && !s1_v && !s2_v && !s3_v && (sb_empty || (32'(sb_count) == 32'd1 && sb_pop))
                && rf_empty && tg_empty;
  assign fin     = (st == S_RUN) && drained && pk_idle;

  mat_packer #(.NV(MO)) u_pack (
    .clk, .rst_n, .clear(clr),
    .in_valid(!rf_empty || t_valid[0]), .in_ready(pk_ready), .in_vals(pk_vals), .in_n(pk_n), .in_fp32(f_qk && f_fp32),
    .in_new_run(pk_new), .in_last(pk_last), .in_run_addr(pk_addr), .flush(drained), .idle(pk_idle),
    .wr_valid, .wr_ready, .wr_addr, .wr_data, .wr_strb);

  // Self-check: the credits keep the FIFOs from overflowing and the trees run in lockstep; a violation
  // (a design bug) is reported as err_code 8 with done.
  assign ovf = (sb_full && sb_push && !sb_pop) || (rf_full && rf_push && !rf_pop) || (32'(tg_count) > 32'(TAGD))
            || (t_valid != {MO{t_valid[0]}}) || (sb_empty && t_valid[0]);
endmodule
