// sfu_elt: the SFU's eltwise and act (doc/isa.md 7.5 "eltwise", "act", 7.6 piecewise-linear tables; section 9
// opcodes 0x23, 0x24).
//   eltwise: dst[i] = fp16(a[i] op b[j]), op = ⊕ / ⊖ / ⊗ of the fp32 conversions, j = i mod period
//            (period 0: j = i);
//   act:     dst[i] = fp16(pwl(fp32(src[i]))) with the fp32 [nseg+2, 2] (slope, intercept) table at `table`
//            (pwl_index / pwl_apply of hw_models/rtl/fp: the 7.6 entry rule and the flat-exterior inf rule).
//
// Dataflow: SFU_LANES lanes compute one group of consecutive elements per cycle (one fp32 add or mul, or one
// PWL lookup + evaluation per lane, combinational), bound by the formula ceil(count/SFU_LANES).
//  * act first reads the whole table with one request into a local table RAM (TAB_N entries in words of one
//    beat, one word written per cycle; all lanes read it at once); src's requests follow it at once (so src
//    streams in while the table loads: they are on other channels or queue behind it), and the lanes start
//    once the whole table is in (any value may need any entry).
//  * The `a` (act: src) operand streams through a 64-beat FIFO, requested in chunks of up to 8 beats as FIFO
//    credit frees up (while act's table loads) or, once the lanes run, while fewer than AIF = 16 beats are in
//    flight (so the reads do not crowd dst's writes out of a shared channel); a group is read at a lane-aligned
//    offset of the head beat.
//  * eltwise's b: with period*2 <= PORT_BYTES it is read once (one beat) into a register and doubled in place
//    until it holds >= PORT_BYTES/4 elements of the periodic sequence; otherwise (period 0 or a long row) every
//    row of period elements (period 0: one row of count) is requested from memory into its own 8-beat FIFO,
//    interleaved with a's chunks. A packer stitches row pieces into lane groups aligned with a's groups.
//  * Results are assembled into an output beat (its layout is a's, from dst) and written, one beat per
//    completed dst beat, with byte strobes over the elements.
//  Reads, compute and writes overlap; a broadcast with a period that is neither 0, count nor a power of two
//  first checks divisibility with a 32-cycle serial remainder.
//
// Cycle behaviour: start (1 cycle, the field checks) -> 1 check cycle (+ 32 remainder cycles, see above) -> stream
// -> done
// (busy low, done high for one cycle; a new start is taken in that cycle).
// err_code: 1 count is 0 (act: or nseg is 0); 2 period does not divide count; 3 an operand range lies outside
// every region or crosses a region end; 8 act table larger than this implementation's TAB_N entries
// (nseg + 2 > TAB_N). With err the unit does no memory traffic.
// Assumes PORT_BYTES/2 is a multiple of SFU_LANES (true for the built-in targets).
// dst may equal a (or b with period 0, or act's src): a dst beat is written only after the same beat of the
// operands was received. Other overlaps of dst with an operand are not supported.
module sfu_elt import dlavm_pkg::*; (
  input  logic                  clk, rst_n,
  input  logic                  start,
  /* verilator lint_off UNUSEDSIGNAL */  // wait mask, reserved bits and the words past the last field
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
  localparam int PB = PORT_BYTES;
  localparam int L = SFU_LANES;
  localparam int EPB = PB / 2;                    // fp16 elements per beat
  localparam int EW = $clog2(EPB + 1);            // element offset / count within a beat, 0..EPB
  localparam int LW = $clog2(L + 1);              // 0..L
  localparam int FD = 8;                          // b FIFO depth (beats)
  localparam int FDA = 64;                        // a FIFO depth (beats): reads run ahead of the lanes
  localparam int CHUNK = 8;                       // beats per request
  localparam int AIF = 2 * CHUNK;                 // a beats in flight (requested, not received) once lanes run
  localparam int CW = $clog2(FD + 1);
  localparam int CWA = $clog2(FDA + 1);
  localparam int TAB_N = 1024;                    // act table entries held locally
  localparam int TW = $clog2(TAB_N);
  localparam int TPB = PB / 8;                    // table entries per beat
  localparam int TWE = (TPB < TAB_N) ? TPB : TAB_N;  // entries per table RAM word (one beat's)
  localparam int TNW = TAB_N / TWE;               // table RAM words
  localparam int TEB = $clog2(TWE);               // entry bits within a word
  localparam int TQ = 16;                         // tag FIFO depth (outstanding requests)
  localparam logic [63:0] CHUNK_BYTES = 64'(CHUNK * PB);

  function automatic logic in_region(input logic [127:0] a, input logic [127:0] n);
    logic [127:0] dh, dd, ds;   // offsets from each region's base (huge after a wrap when a < base)
    dh = a - 128'($unsigned(HBM_BASE));
    dd = a - 128'($unsigned(DDR_BASE));
    ds = a - 128'($unsigned(SRAM_BASE));
    return (dh < 128'($unsigned(HBM_SIZE))  && dh + n <= 128'($unsigned(HBM_SIZE)))
        || (dd < 128'($unsigned(DDR_SIZE))  && dd + n <= 128'($unsigned(DDR_SIZE)))
        || (ds < 128'($unsigned(SRAM_SIZE)) && ds + n <= 128'($unsigned(SRAM_SIZE)));
  endfunction

  function automatic logic [63:0] beats_of(input logic [63:0] nbytes);
    return (nbytes + 64'(PB - 1)) / 64'(PB);
  endfunction

  typedef enum logic [2:0] {S_IDLE, S_CHK2, S_DIV, S_RUN, S_FIN} state_t;
  state_t st;

  // ---------------------------------------------------------------- fields
  logic        is_act;
  logic [1:0]  f_fn;
  logic [31:0] f_a, f_b, f_dst, f_tab, f_count, f_period, f_nseg, f_lo, f_inv;
  logic [7:0]  code_q;
  logic        err_q;
  logic [5:0]  div_i;
  logic [32:0] div_rem;
  logic [31:0] p_row;                             // b row length in elements (period, or count for period 0)
  logic        b_local;                           // b held in a register (period*2 <= PB)

  // the instruction's fields as the start cycle sees them
  logic        n_act;
  logic [31:0] n_a, n_b, n_dst, n_tab, n_count, n_period, n_nseg;
  assign n_act    = (insn[7:0] == OP_ACT);
  assign n_a      = insn[F_ELTWISE_A_LO +: 32];
  assign n_b      = insn[F_ELTWISE_B_LO +: 32];
  assign n_dst    = n_act ? insn[F_ACT_DST_LO +: 32] : insn[F_ELTWISE_DST_LO +: 32];
  assign n_tab    = insn[F_ACT_TABLE_LO +: 32];
  assign n_count  = insn[F_ELTWISE_COUNT_LO +: 32];
  assign n_period = n_act ? 32'd0 : insn[F_ELTWISE_PERIOD_LO +: 32];
  assign n_nseg   = insn[F_ACT_NSEG_LO +: 32];

  assign busy = (st != S_IDLE) && (st != S_FIN);
  assign done = (st == S_FIN);
  assign err = (st == S_FIN) && err_q;
  assign err_code = (st == S_FIN) ? code_q : 8'd0;

  // ---------------------------------------------------------------- request side
  typedef enum logic [1:0] {T_A, T_B, T_TAB, T_BL} tag_t;
  tag_t        tagq [TQ];
  logic [$clog2(TQ)-1:0] tq_rd, tq_wr;
  logic [$clog2(TQ):0]   tq_n;

  logic [63:0] a_req_addr, a_req_left;            // a bytes still to request
  logic [63:0] b_req_addr, b_row_req_left;        // current b row: bytes still to request
  logic [63:0] b_rows_elems;                      // b elements covered by the rows started so far
  logic        tab_req_done, bl_req_done;
  logic [CWA-1:0] a_cred;                         // free FIFO beats not promised to outstanding requests
  logic [CW-1:0]  b_cred;
  logic        turn_b;                            // alternate a / b requests

  logic [63:0] a_n, b_n;
  logic [CWA-1:0] a_nb;
  logic [CW-1:0]  b_nb;
  assign a_n = (a_req_left > CHUNK_BYTES) ? CHUNK_BYTES : a_req_left;
  assign b_n = (b_row_req_left > CHUNK_BYTES) ? CHUNK_BYTES : b_row_req_left;
  assign a_nb = CWA'(beats_of(a_n));
  assign b_nb = CW'(beats_of(b_n));

  logic want_tab, want_bl, want_a, want_b, b_new_row;
  assign b_new_row = (b_row_req_left == 64'd0) && (b_rows_elems < 64'(f_count));
  assign want_tab = is_act && !tab_req_done;
  assign want_bl  = !is_act && b_local && !bl_req_done;
  assign want_b   = !is_act && !b_local && (b_row_req_left != 64'd0) && (b_cred >= b_nb);

  tag_t        req_tag;
  logic [MEM_AW-1:0] req_addr;
  logic [31:0] req_bytes;
  logic        req_any;
  always_comb begin
    req_any = 1'b1;
    req_tag = T_A; req_addr = MEM_AW'(a_req_addr); req_bytes = 32'(a_n);
    if (want_tab) begin
      req_tag = T_TAB; req_addr = MEM_AW'({f_tab, 5'd0});
      req_bytes = 32'(((64'(f_nseg) + 64'd2) * 64'd8 + 64'd31) & ~64'd31);
    end else if (want_bl) begin
      req_tag = T_BL; req_addr = MEM_AW'({f_b, 5'd0}); req_bytes = 32'((64'(f_period) * 64'd2 + 64'd31) & ~64'd31);
    end else if (want_b && (turn_b || !want_a)) begin
      req_tag = T_B; req_addr = MEM_AW'(b_req_addr); req_bytes = 32'(b_n);
    end else if (!want_a) begin
      req_any = 1'b0;
    end
  end
  assign rd_req_valid = (st == S_RUN) && req_any && (tq_n < ($clog2(TQ)+1)'(TQ));
  assign rd_req_addr  = req_addr;
  assign rd_req_bytes = req_bytes;
  logic req_fire;
  assign req_fire = rd_req_valid && rd_req_ready;

  // ---------------------------------------------------------------- response side
  tag_t rsp_tag;
  assign rsp_tag = tagq[tq_rd];
  assign rd_rsp_ready = (st == S_RUN) && (tq_n != 0);
  logic rsp_fire;
  assign rsp_fire = rd_rsp_valid && rd_rsp_ready;

  // a / b beat FIFOs
  logic [PORT_BITS-1:0] fa [FDA];
  logic [PORT_BITS-1:0] fb [FD];
  logic [$clog2(FDA)-1:0] fa_rd, fa_wr;
  logic [$clog2(FD)-1:0] fb_rd, fb_wr;
  logic [CWA-1:0] fa_n;
  logic [CW-1:0] fb_n;
  logic fa_pop, fb_pop;

  // act table: words of TWE entries, one beat written per cycle (a RAM with one write port), read by every
  // lane at once
  logic [TWE*64-1:0] tab [TNW];
  if (TNW < 2 || TAB_N % TWE != 0) begin : g_bad_tab
    $error("sfu_elt: the act table must be at least two beats");
  end
  logic [TW:0] tab_wp;
  logic        tab_ok;                            // table fully received

  // a's requests: up to the FIFO's free beats while act's table loads (src streams in meanwhile); once the
  // lanes run, at most AIF beats in flight. More would only queue in the channel ahead of this unit's own
  // dst writes (a channel whose queue is full of reads takes no writes), stalling the lanes on the write-out
  // while the reads run far ahead, and leave a lane-bound tail with the channel half idle at the end.
  logic [31:0] a_infl;
  assign a_infl = 32'(FDA) - 32'(a_cred) - 32'(fa_n);
  assign want_a = (a_req_left != 64'd0) && (a_cred >= a_nb) && (!is_act || tab_req_done)
               && ((is_act && !tab_ok) || a_infl + 32'(a_nb) <= 32'(AIF));

  // local b (period*2 <= PB)
  logic [PORT_BITS-1:0] breg;
  logic [EW-1:0]        blen;                     // elements of the periodic sequence held in breg
  logic                 bl_loaded, bl_ready;

  // ---------------------------------------------------------------- b packer: groups of L elements of the
  // periodic b sequence, aligned with a's groups
  logic [63:0]  b_left;                           // b elements not yet taken into the packer
  logic [31:0]  b_rowl;                           // elements left in the current row (0: start a new row)
  logic [EW-1:0] b_off;                           // element offset in the source beat
  logic [2*L*16-1:0] sb;                          // stitch buffer
  logic [LW-1:0] sc;                              // elements in sb
  logic [L*16-1:0] bg;                            // the b group waiting for compute
  logic          bg_v;

  logic [PORT_BITS-1:0] b_src;
  logic b_src_v;
  assign b_src   = b_local ? breg : fb[fb_rd];
  assign b_src_v = b_local ? bl_ready : (fb_n != 0);

  logic [31:0] b_rowlen, b_rowl_eff;
  logic [63:0] k_lim;
  logic [LW-1:0] b_k;
  assign b_rowlen = b_local ? 32'(blen) : p_row;
  assign b_rowl_eff = (b_rowl == 32'd0) ? b_rowlen : b_rowl;
  always_comb begin
    k_lim = 64'(L);
    if (64'(b_rowl_eff) < k_lim) k_lim = 64'(b_rowl_eff);
    if (64'(EPB) - 64'(b_off) < k_lim) k_lim = 64'(EPB) - 64'(b_off);
    if (b_left < k_lim) k_lim = b_left;
  end
  assign b_k = LW'(k_lim);

  logic [L*16-1:0] b_take;
  logic [2*L*16-1:0] b_cat;
  logic b_last_take, b_emit, b_step, consume;
  assign b_take = (L*16)'(b_src >> {b_off, 4'b0}) & ~({(L*16){1'b1}} << {b_k, 4'b0});
  assign b_cat = sb | ((2*L*16)'(b_take) << {sc, 4'b0});
  assign b_last_take = (b_left == 64'(b_k));
  assign b_emit = ((32'(sc) + 32'(b_k)) >= 32'(L)) || b_last_take;
  assign b_step = (st == S_RUN) && !is_act && (b_left != 64'd0) && b_src_v && (!bg_v || consume);
  // after the last take, elements left in the stitch buffer form the final (short) group
  logic b_flush;
  assign b_flush = (st == S_RUN) && !is_act && (b_left == 64'd0) && (sc != '0) && (!bg_v || consume);
  assign fb_pop = b_step && !b_local &&
                  ((32'(b_off) + 32'(b_k) == 32'(EPB)) || (32'(b_k) == b_rowl_eff));

  // ---------------------------------------------------------------- a side and compute
  logic [63:0] a_left;                            // a elements not yet computed
  logic [EW-1:0] a_off;
  logic [LW-1:0] a_k;
  assign a_k = (a_left < 64'(L)) ? LW'(a_left) : LW'(L);
  logic [PORT_BITS-1:0] a_beat;
  assign a_beat = fa[fa_rd];
  logic [L*16-1:0] a_grp;
  assign a_grp = (L*16)'(a_beat >> {a_off, 4'b0});

  logic a_beat_end;
  assign a_beat_end = (32'(a_off) + 32'(a_k) == 32'(EPB)) || (a_left == 64'(a_k));

  // output beat assembly + write holding register
  logic [PORT_BITS-1:0]  ob;
  logic [PORT_BYTES-1:0] obs;
  logic [63:0]           o_addr;                  // dst address of the beat being assembled
  logic                  wv_q;
  logic [MEM_AW-1:0]     wa_q;
  logic [PORT_BITS-1:0]  wd_q;
  logic [PORT_BYTES-1:0] ws_q;
  assign wr_valid = wv_q;
  assign wr_addr = wa_q;
  assign wr_data = wd_q;
  assign wr_strb = ws_q;
  logic wfree;
  assign wfree = !wv_q || wr_ready;

  assign consume = (st == S_RUN) && (a_left != 64'd0) && (fa_n != 0) && (is_act ? tab_ok : bg_v) &&
                   (!a_beat_end || wfree);
  assign fa_pop = consume && a_beat_end;

  logic [L*16-1:0] y_grp;
  for (genvar i = 0; i < L; i++) begin : g_lane
    logic [31:0] fx, fy, fys, s_add, s_mul, s_act, ent_i, r;
    logic [63:0] ent;
    logic [15:0] y16;
    fp16_to_fp32 u_a (.a(a_grp[16*i +: 16]), .y(fx));
    fp16_to_fp32 u_b (.a(bg[16*i +: 16]), .y(fy));
    assign fys = (f_fn == 2'(ELTWISE_FN_SUB)) ? {~fy[31], fy[30:0]} : fy;
    fp32_add u_add (.a(fx), .b(fys), .y(s_add));
    fp32_mul u_mul (.a(fx), .b(fy), .y(s_mul));
    pwl_index u_idx (.x(fx), .lo(f_lo), .inv_step(f_inv), .nseg(f_nseg), .entry(ent_i));
    assign ent = (ent_i < 32'(TAB_N)) ? tab[ent_i[TW-1:TEB]][{ent_i[TEB-1:0], 6'd0} +: 64] : 64'd0;
    pwl_apply u_app (.x(fx), .slope(ent[31:0]), .icpt(ent[63:32]), .y(s_act));
    assign r = is_act ? s_act : (f_fn == 2'(ELTWISE_FN_MUL)) ? s_mul : s_add;
    fp32_to_fp16 u_o (.a(r), .y(y16));
    assign y_grp[16*i +: 16] = y16;
  end

  logic [PORT_BITS-1:0]  ob_next;
  logic [PORT_BYTES-1:0] obs_next;
  assign ob_next = ob | (PORT_BITS'(y_grp) << {a_off, 4'b0});
  logic [2*L-1:0] gmask;                          // byte strobes of a group of a_k elements
  assign gmask = ~({(2*L){1'b1}} << {a_k, 1'b0});
  assign obs_next = obs | (PORT_BYTES'(gmask) << {a_off, 1'b0});

  // ---------------------------------------------------------------- sequential
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      st <= S_IDLE; err_q <= 1'b0; code_q <= 8'd0;
      is_act <= 1'b0; f_fn <= '0; f_a <= '0; f_b <= '0; f_dst <= '0; f_tab <= '0; f_count <= '0;
      f_period <= '0; f_nseg <= '0; f_lo <= '0; f_inv <= '0;
      div_i <= '0; div_rem <= '0; p_row <= '0; b_local <= 1'b0;
      tq_rd <= '0; tq_wr <= '0; tq_n <= '0;
      a_req_addr <= '0; a_req_left <= '0; b_req_addr <= '0; b_row_req_left <= '0; b_rows_elems <= '0;
      tab_req_done <= 1'b0; bl_req_done <= 1'b0; a_cred <= '0; b_cred <= '0; turn_b <= 1'b0;
      fa_rd <= '0; fa_wr <= '0; fb_rd <= '0; fb_wr <= '0; fa_n <= '0; fb_n <= '0;
      tab_wp <= '0; tab_ok <= 1'b0;
      breg <= '0; blen <= '0; bl_loaded <= 1'b0; bl_ready <= 1'b0;
      b_left <= '0; b_rowl <= '0; b_off <= '0; sb <= '0; sc <= '0; bg <= '0; bg_v <= 1'b0;
      a_left <= '0; a_off <= '0; ob <= '0; obs <= '0; o_addr <= '0;
      wv_q <= 1'b0; wa_q <= '0; wd_q <= '0; ws_q <= '0;
    end else begin
      if (wv_q && wr_ready) wv_q <= 1'b0;
      case (st)
        S_IDLE, S_FIN: begin
          st <= S_IDLE;
          if (start) begin
            is_act  <= n_act;
            f_fn    <= insn[F_ELTWISE_FN_LO +: 2];
            f_a     <= n_a;                                  // act: src (same word)
            f_b     <= n_b;
            f_dst   <= n_dst;
            f_tab   <= n_tab;
            f_count <= n_count;                              // act: count (same word)
            f_period <= n_period;
            f_nseg  <= n_nseg;
            f_lo    <= insn[F_ACT_LO_LO +: 32];
            f_inv   <= insn[F_ACT_INV_STEP_LO +: 32];
            // the field and range checks, in the start cycle
            err_q <= 1'b1;
            if (n_count == 32'd0 || (n_act && n_nseg == 32'd0)) code_q <= 8'd1;
            else if (!in_region({91'd0, n_a, 5'd0}, 128'(n_count) * 128'd2)
                  || !in_region({91'd0, n_dst, 5'd0}, 128'(n_count) * 128'd2)
                  || (!n_act && !in_region({91'd0, n_b, 5'd0},
                                           128'(n_period == 32'd0 ? n_count : n_period) * 128'd2))
                  || (n_act && !in_region({91'd0, n_tab, 5'd0}, (128'(n_nseg) + 128'd2) * 128'd8)))
              code_q <= 8'd3;
            else if (n_act && 64'(n_nseg) + 64'd2 > 64'(TAB_N)) code_q <= 8'd8;
            else begin
              err_q <= 1'b0; code_q <= 8'd0;
            end
            div_i <= 6'd0; div_rem <= '0;
            st <= S_CHK2;
          end
        end
        S_CHK2: begin
          if (err_q) st <= S_FIN;
          else if (!is_act && f_period != 32'd0 && f_period != f_count && (f_period & (f_period - 32'd1)) != 32'd0)
            st <= S_DIV;
          else if (!is_act && f_period != 32'd0 && (f_period & (f_period - 32'd1)) == 32'd0 &&
                   (f_count & (f_period - 32'd1)) != 32'd0) begin
            err_q <= 1'b1; code_q <= 8'd2; st <= S_FIN;   // power-of-two period: divisibility is a mask test
          end else st <= S_RUN;
        end
        S_DIV: begin  // restoring remainder of count / period, one bit per cycle
          if (div_i == 6'd32) begin
            if (div_rem != 33'd0) begin
              err_q <= 1'b1; code_q <= 8'd2; st <= S_FIN;
            end else st <= S_RUN;
          end else begin
            div_i <= div_i + 6'd1;
            if ({div_rem[31:0], f_count[5'(31 - div_i)]} >= {1'b0, f_period})
              div_rem <= {div_rem[31:0], f_count[5'(31 - div_i)]} - {1'b0, f_period};
            else
              div_rem <= {div_rem[31:0], f_count[5'(31 - div_i)]};
          end
        end
        S_RUN: begin
          // (the run registers were set up when entering S_RUN: see below)
          // requests
          if (req_fire) begin
            tagq[tq_wr] <= req_tag;
            tq_wr <= tq_wr + 1'b1;
            turn_b <= (req_tag == T_A);
            if (req_tag == T_TAB) tab_req_done <= 1'b1;
            if (req_tag == T_BL) bl_req_done <= 1'b1;
            if (req_tag == T_A) begin
              a_req_addr <= a_req_addr + a_n;
              a_req_left <= a_req_left - a_n;
            end
          end
          if (req_fire && req_tag == T_B) begin
            b_req_addr <= b_req_addr + b_n;
            b_row_req_left <= b_row_req_left - b_n;
          end else if (!is_act && !b_local && b_new_row) begin
            b_req_addr <= {27'd0, f_b, 5'd0};
            b_row_req_left <= (64'(p_row) * 64'd2 + 64'd31) & ~64'd31;
            b_rows_elems <= b_rows_elems + 64'(p_row);
          end
          // credits: taken by a request, returned by a FIFO pop
          a_cred <= a_cred - ((req_fire && req_tag == T_A) ? a_nb : CWA'(0)) + CWA'(fa_pop);
          b_cred <= b_cred - ((req_fire && req_tag == T_B) ? b_nb : CW'(0)) + CW'(fb_pop);
          // responses
          if (rsp_fire) begin
            case (rsp_tag)
              T_A: begin fa[fa_wr] <= rd_rsp_data; fa_wr <= fa_wr + 1'b1; end
              T_B: begin fb[fb_wr] <= rd_rsp_data; fb_wr <= fb_wr + 1'b1; end
              T_TAB: begin
                // tab_wp is a multiple of TWE: a beat's entries fill one word, or lie past the table
                if (32'(tab_wp) < 32'(TAB_N)) tab[tab_wp[TW-1:TEB]] <= rd_rsp_data[TWE*64-1:0];
                tab_wp <= tab_wp + (TW+1)'(TPB);
                if (rd_rsp_last) tab_ok <= 1'b1;
              end
              default: begin  // T_BL: keep the period elements, zero the rest
                breg <= rd_rsp_data & ~({PORT_BITS{1'b1}} << {f_period[EW-1:0], 4'b0});
                bl_loaded <= 1'b1;
              end
            endcase
            if (rd_rsp_last) begin
              tq_rd <= tq_rd + 1'b1;
            end
          end
          tq_n <= tq_n + ($clog2(TQ)+1)'(req_fire) - ($clog2(TQ)+1)'(rsp_fire && rd_rsp_last);
          fa_n <= fa_n + CWA'(rsp_fire && rsp_tag == T_A) - CWA'(fa_pop);
          fb_n <= fb_n + CW'(rsp_fire && rsp_tag == T_B) - CW'(fb_pop);
          if (fa_pop) fa_rd <= fa_rd + 1'b1;
          if (fb_pop) fb_rd <= fb_rd + 1'b1;
          // local b: double the periodic sequence while it fits in half a beat
          if (bl_loaded && !bl_ready) begin
            if (32'(blen) * 32'd2 <= 32'(EPB)) begin
              breg <= breg | (breg << {blen, 4'b0});
              blen <= EW'(32'(blen) * 32'd2);
            end else bl_ready <= 1'b1;
          end
          // b packer
          if (consume) bg_v <= 1'b0;
          if (b_step) begin
            b_left <= b_left - 64'(b_k);
            if (32'(b_k) == b_rowl_eff) begin
              b_rowl <= 32'd0; b_off <= '0;
            end else begin
              b_rowl <= b_rowl_eff - 32'(b_k);
              b_off <= (32'(b_off) + 32'(b_k) == 32'(EPB)) ? '0 : b_off + EW'(b_k);
            end
            if (b_emit) begin
              bg <= b_cat[L*16-1:0];
              bg_v <= 1'b1;
              sb <= b_cat >> (L*16);
              sc <= (32'(sc) + 32'(b_k) >= 32'(L)) ? LW'(32'(sc) + 32'(b_k) - 32'(L)) : '0;
            end else begin
              sb <= b_cat;
              sc <= sc + b_k;
            end
          end else if (b_flush) begin
            bg <= sb[L*16-1:0];
            bg_v <= 1'b1;
            sb <= '0;
            sc <= '0;
          end
          // compute one group
          if (consume) begin
            a_left <= a_left - 64'(a_k);
            if (a_beat_end) begin
              a_off <= '0;
              wv_q <= 1'b1;
              wa_q <= MEM_AW'(o_addr);
              wd_q <= ob_next;
              ws_q <= obs_next;
              ob <= '0; obs <= '0;
              o_addr <= o_addr + 64'(PB);
            end else begin
              a_off <= a_off + EW'(a_k);
              ob <= ob_next; obs <= obs_next;
            end
          end
          if (a_left == 64'd0 && !wv_q && tq_n == 0 && a_req_left == 64'd0) st <= S_FIN;
        end
        default: st <= S_IDLE;
      endcase
      // entering S_RUN: set up the streams
      if ((st == S_CHK2 && !err_q) || (st == S_DIV && div_i == 6'd32 && div_rem == 33'd0)) begin
        p_row <= (f_period == 32'd0) ? f_count : f_period;
        b_local <= !is_act && f_period != 32'd0 && 64'(f_period) * 64'd2 <= 64'(PB);
        tq_rd <= '0; tq_wr <= '0; tq_n <= '0;
        a_req_addr <= {27'd0, f_a, 5'd0};
        a_req_left <= (64'(f_count) * 64'd2 + 64'd31) & ~64'd31;
        b_req_addr <= {27'd0, f_b, 5'd0};
        b_row_req_left <= '0; b_rows_elems <= '0;
        tab_req_done <= 1'b0; bl_req_done <= 1'b0;
        a_cred <= CWA'(FDA); b_cred <= CW'(FD); turn_b <= 1'b0;
        fa_rd <= '0; fa_wr <= '0; fb_rd <= '0; fb_wr <= '0; fa_n <= '0; fb_n <= '0;
        tab_wp <= '0; tab_ok <= 1'b0;
        breg <= '0; blen <= EW'(f_period); bl_loaded <= 1'b0; bl_ready <= 1'b0;
        b_left <= is_act ? 64'd0 : 64'(f_count);
        b_rowl <= '0; b_off <= '0; sb <= '0; sc <= '0; bg_v <= 1'b0;
        a_left <= 64'(f_count); a_off <= '0; ob <= '0; obs <= '0;
        o_addr <= {27'd0, f_dst, 5'd0};
      end
    end
  end
endmodule
