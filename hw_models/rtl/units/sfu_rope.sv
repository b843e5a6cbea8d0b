// sfu_rope: the SFU's rope (doc/isa.md 7.5 "rope", section 6 "RoPE table", section 9 opcode 0x25): for token m at
// position p = pos0 + m, head h, with c_i = T[p, i], s_i = T[p, D/2 + i] (fp32 table [positions, D]) and pairs
// (x1, x2) = (x_i, x_{i+D/2}) (halves) or (x_{2i}, x_{2i+1}) (interleaved):
//   y1 = fp16((x1 ⊗ c_i) ⊖ (x2 ⊗ s_i)),  y2 = fp16((x2 ⊗ c_i) ⊕ (x1 ⊗ s_i)), written to the same lanes of dst.
//
// Dataflow: the source [M, H, D] streams in as one contiguous range (requests of up to 8 beats as a 32-beat
// FIFO frees up); the table row of each token (D*4 bytes, contiguous rows pos0..pos0+M-1) is requested into
// one of TS table slots, up to TS tokens ahead (a row's request pays the channel set-up when the channel was
// idle, so a few tokens of lane work must cover it). Responses come back in request order, so a token's table
// row is requested before the source bytes of that token: x is requested only up to the tokens whose table
// row request has started (token 0's row is the very first request). Each head row (D elements) is gathered into one of two row
// buffers (filled while the other is computed); the compute then produces the row in output order,
// SFU_LANES elements per cycle: lane e computes (x_e ⊗ c) ⊕ ±(x_partner ⊗ s) (the ⊖ of y1 is ⊕ of the negated
// product, identical in IEEE arithmetic), and results are assembled into dst beats (layout = src's) written
// with byte strobes. Per cycle the fill moves min(FW, rest of row, rest of beat) elements (FW = 4*SFU_LANES
// or a beat), the compute min(SFU_LANES, rest of row, rest of beat), so a row costs about ceil(D/SFU_LANES)
// compute cycles (+1 where it straddles a beat) and the fill keeps ahead: bound by the formula
// ceil(M*H*D/SFU_LANES) plus a fixed start-up (the first row's arrival and gather).
// Storage (each buffer a RAM with one write port, read by the lanes without a clock): a table slot is TNW words
// of one response beat each (TWE entries); the row buffers are XBK banks of 8-element groups (group g of a row
// in bank g mod XBK), so a fill cycle, which moves whole groups (d, the beat and FW are multiples of 8),
// writes at most one group per bank.
//
// Cycle behaviour: start (1 cycle) -> 1 check cycle -> stream -> done (busy low, done high for one cycle; a new
// start is taken in that cycle).
// err_code: 1 m, heads or d is 0; 3 an operand range (src, dst, the table rows pos0..pos0+m-1) lies outside
// every region or crosses a region end; 4 d not a multiple of 8; 5 pos0 + m > MAX_SEQ_LEN; 8 d > DMAX (256,
// this implementation's row buffer). With err the unit does no memory traffic.
// dst may equal src (in place): a dst element is written only after its whole row was read. Other overlaps
// are not supported. Assumes PORT_BYTES is a multiple of 32 and PORT_BYTES/2 >= 8.
module sfu_rope import dlavm_pkg::*; (
  input  logic                  clk, rst_n,
  input  logic                  start,
  /* verilator lint_off UNUSEDSIGNAL */  // opcode, wait mask, reserved bits and the words past the last field
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
  localparam int TPB = PB / 4;                    // fp32 table entries per beat
  localparam int EW = $clog2(EPB + 1);
  localparam int LW = $clog2(L + 1);
  localparam int DMAX = 256;
  localparam int DW = $clog2(DMAX + 1);
  localparam int XW = $clog2(DMAX);
  localparam int FD = 32;                         // x FIFO (beats): reads run ahead of the lanes
  localparam int CHUNK = 8;
  localparam int CW = $clog2(FD + 1);
  localparam int TQ = 16;
  localparam int FW = (EPB < 4 * L) ? EPB : 4 * L;  // elements gathered into a row buffer per cycle
  localparam int FWW = $clog2(FW + 1);
  localparam int TS = 8;                          // table row slots (tokens requested ahead)
  localparam int TSB = $clog2(TS);
  localparam logic [63:0] CHUNK_BYTES = 64'(CHUNK * PB);
  // storage as RAMs with one write port each (doc/rtl.md, "Resources"):
  localparam int TWE = (TPB < DMAX) ? TPB : DMAX;  // table: words of TWE entries, one response beat each
  localparam int TNW = DMAX / TWE;                // words of a table slot
  localparam int TEB = $clog2(TWE);
  localparam int TWB = $clog2(TNW);               // word bits of a table slot (0: one word)
  localparam int TAW = TSB + TWB;
  localparam int GE = 8;                          // row buffer: groups of GE elements (d is a multiple of 8)
  localparam int NG = DMAX / GE;                  // groups of a row
  localparam int XBK0 = 1 << $clog2((FW < DMAX ? FW : DMAX) / GE);
  localparam int XBK = (XBK0 < NG) ? XBK0 : NG;   // banks (group g in bank g mod XBK): a fill writes <= XBK groups
  localparam int XBD = 2 * NG / XBK;              // words of a bank (two row slots)
  localparam int XBB = $clog2(XBK);
  localparam int XWA = $clog2(XBD);               // word address of a bank: the slot, then g / XBK
  localparam int XGB = $clog2(NG);

  if (FW % GE != 0 || DMAX % TWE != 0 || XBK < 2) begin : g_bad
    $error("sfu_rope: unsupported parameters");
  end

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

  typedef enum logic [2:0] {S_IDLE, S_CHK2, S_RUN, S_FIN} state_t;
  state_t st;

  logic        f_il;
  logic [31:0] f_src, f_dst, f_tab, f_m, f_h, f_d, f_pos0;
  logic [7:0]  code_q;
  logic        err_q;
  logic [127:0] c_n;                              // M*H*D

  assign busy = (st != S_IDLE) && (st != S_FIN);
  assign done = (st == S_FIN);
  assign err = (st == S_FIN) && err_q;
  assign err_code = (st == S_FIN) ? code_q : 8'd0;

  logic [DW-1:0] dd;                              // D (<= DMAX once running)
  logic [DW-1:0] dh;                              // D/2
  assign dd = DW'(f_d);
  assign dh = DW'(f_d >> 1);

  // ---------------------------------------------------------------- requests
  typedef enum logic {T_X, T_T} tag_t;
  tag_t tagq [TQ];
  logic [$clog2(TQ)-1:0] tq_rd, tq_wr;
  logic [$clog2(TQ):0]   tq_n;

  logic [63:0] x_req_addr, x_req_left;
  logic [CW-1:0] x_cred;
  logic [63:0] t_req_addr, t_row_req_left;        // table row being requested
  logic [31:0] t_req_tok;                         // tokens whose table row request was started
  logic [31:0] t_free_tok;                        // tokens whose table slot was freed
  logic [63:0] x_lim;                             // x is requested only below this address: the tokens
  logic [63:0] tok_bytes;                         //   whose table row request has started (H*D*2 each)

  logic [63:0] x_n, t_n;
  logic [CW-1:0] x_nb;
  logic [63:0] x_room;
  always_comb begin
    // whole beats (the beat grid of the source stream starts at src), the last request excepted
    x_room = (x_lim > x_req_addr) ? ((x_lim - x_req_addr + 64'(PB - 1)) & ~64'(PB - 1)) : 64'd0;
    x_n = (x_req_left > CHUNK_BYTES) ? CHUNK_BYTES : x_req_left;
    if (x_room < x_n) x_n = x_room;
  end
  assign t_n = (t_row_req_left > CHUNK_BYTES) ? CHUNK_BYTES : t_row_req_left;
  assign x_nb = CW'(beats_of(x_n));

  logic want_x, want_t, t_new_row;
  assign want_x = (x_n != 64'd0) && (x_cred >= x_nb);
  assign want_t = (t_row_req_left != 64'd0);
  assign t_new_row = (t_row_req_left == 64'd0) && (t_req_tok < f_m) && (t_req_tok - t_free_tok < 32'(TS));

  logic req_t;
  assign req_t = want_t;                          // a table row before the x bytes of its token
  assign rd_req_valid = (st == S_RUN) && !err_q && (want_x || want_t) && (tq_n < ($clog2(TQ)+1)'(TQ));
  assign rd_req_addr  = req_t ? MEM_AW'(t_req_addr) : MEM_AW'(x_req_addr);
  assign rd_req_bytes = req_t ? 32'(t_n) : 32'(x_n);
  logic req_fire;
  assign req_fire = rd_req_valid && rd_req_ready;

  // ---------------------------------------------------------------- responses
  tag_t rsp_tag;
  assign rsp_tag = tagq[tq_rd];
  assign rd_rsp_ready = (st == S_RUN) && (tq_n != 0);
  logic rsp_fire;
  assign rsp_fire = rd_rsp_valid && rd_rsp_ready;

  logic [PORT_BITS-1:0] fx [FD];
  logic [$clog2(FD)-1:0] fx_rd, fx_wr;
  logic [CW-1:0] fx_n;
  logic fx_pop;

  logic [TWE*32-1:0] tb [TS*TNW];                 // table slots (TNW words each): D/2 cosines then D/2 sines
  function automatic logic [TAW-1:0] tb_word(input logic [TSB-1:0] slot, input logic [XW-1:0] entry);
    return (TAW'(slot) << TWB) | TAW'(entry >> TEB);
  endfunction
  logic [TS-1:0]  t_valid;
  logic [TSB-1:0] t_rx_slot;                         // slot the table beats go to
  logic [DW-1:0] t_wp;                            // entry write pointer in that slot

  // ---------------------------------------------------------------- row fill
  // row buffers (two slots): group g (elements 8g .. 8g+7) of slot s in bank g mod XBK at word
  // s*NG/XBK + g/XBK; the banks are g_xb[b].mem below
  function automatic logic [XWA-1:0] xb_word(input logic slot, input logic [XW-1:0] elem);
    return (XWA'(slot) << (XWA - 1)) | XWA'(elem >> (3 + XBB));
  endfunction
  logic [1:0]  x_full;
  logic        fs;                                // slot being filled
  logic [DW-1:0] r_fill;
  logic [63:0] fill_rows;                         // rows not yet filled
  logic [EW-1:0] x_off;

  logic [PORT_BITS-1:0] x_beat;
  assign x_beat = fx[fx_rd];
  logic [31:0] fk_lim;
  logic [FWW-1:0] f_k;
  always_comb begin
    fk_lim = 32'(FW);
    if (32'(dd) - 32'(r_fill) < fk_lim) fk_lim = 32'(dd) - 32'(r_fill);
    if (32'(EPB) - 32'(x_off) < fk_lim) fk_lim = 32'(EPB) - 32'(x_off);
  end
  assign f_k = FWW'(fk_lim);
  logic fill_go, fill_row_end;
  assign fill_go = (st == S_RUN) && (fill_rows != 64'd0) && (fx_n != 0) && !x_full[fs];
  assign fill_row_end = (32'(r_fill) + 32'(f_k) == 32'(dd));
  assign fx_pop = fill_go && ((32'(x_off) + 32'(f_k) == 32'(EPB)) || (fill_row_end && fill_rows == 64'd1));
  logic [FW*16-1:0] f_take;
  assign f_take = (FW*16)'(x_beat >> {x_off, 4'b0});

  // ---------------------------------------------------------------- compute
  logic        cs;                                // row slot being computed
  logic [TSB-1:0] ts;                             // its token's table slot
  logic [31:0] c_head;
  logic [DW-1:0] r_c;
  logic [63:0] comp_rows;                         // rows not yet computed
  logic [EW-1:0] o_off;
  logic [63:0] o_addr;
  logic [PORT_BITS-1:0]  ob;
  logic [PORT_BYTES-1:0] obs;
  logic                  wv_q;
  logic [MEM_AW-1:0]     wa_q;
  logic [PORT_BITS-1:0]  wd_q;
  logic [PORT_BYTES-1:0] ws_q;
  assign wr_valid = wv_q;
  assign wr_addr = wa_q;
  assign wr_data = wd_q;
  assign wr_strb = ws_q;

  logic [31:0] ck_lim;
  logic [LW-1:0] c_k;
  always_comb begin
    ck_lim = 32'(L);
    if (32'(dd) - 32'(r_c) < ck_lim) ck_lim = 32'(dd) - 32'(r_c);
    if (32'(EPB) - 32'(o_off) < ck_lim) ck_lim = 32'(EPB) - 32'(o_off);
  end
  assign c_k = LW'(ck_lim);
  logic c_row_end, o_beat_end, c_go;
  assign c_row_end = (32'(r_c) + 32'(c_k) == 32'(dd));
  assign o_beat_end = (32'(o_off) + 32'(c_k) == 32'(EPB)) || (c_row_end && comp_rows == 64'd1);
  assign c_go = (st == S_RUN) && (comp_rows != 64'd0) && x_full[cs] && t_valid[ts] && (!o_beat_end || !wv_q || wr_ready);

  logic [XWA-1:0]   xr_a [2*L];                   // the lanes' row-buffer reads: element, partner
  logic [GE*16-1:0] xr_d [XBK][2*L];              // the word at xr_a[r] in each bank
  logic [L*16-1:0] y_grp;
  for (genvar j = 0; j < L; j++) begin : g_lane
    logic [31:0] e, pe, ci;                       // element, partner, cos/sin index
    logic        first;                           // y1 lane (⊖)
    always_comb begin
      e = 32'(r_c) + 32'(j);
      if (f_il) begin
        first = !e[0];
        pe = e ^ 32'd1;
        ci = e >> 1;
      end else if (e < 32'(dh)) begin
        first = 1'b1; pe = e + 32'(dh); ci = e;
      end else begin
        first = 1'b0; pe = e - 32'(dh); ci = e - 32'(dh);
      end
    end
    logic [15:0] xe, xp;
    logic [31:0] fe, fp, cv, sv, p1, p2, p2s, y;
    logic [15:0] y16;
    logic [XW-1:0] ea, pa, ca, sa;
    assign ea = XW'(e);
    assign pa = XW'(pe);
    assign ca = XW'(ci);
    assign sa = XW'(ci + 32'(dh));
    assign xr_a[2*j] = xb_word(cs, ea);
    assign xr_a[2*j+1] = xb_word(cs, pa);
    assign xe = (e < 32'(DMAX)) ? xr_d[ea[3 +: XBB]][2*j][{ea[2:0], 4'd0} +: 16] : 16'd0;
    assign xp = (pe < 32'(DMAX)) ? xr_d[pa[3 +: XBB]][2*j+1][{pa[2:0], 4'd0} +: 16] : 16'd0;
    assign cv = (ci < 32'(DMAX)) ? tb[tb_word(ts, ca)][{ca[TEB-1:0], 5'd0} +: 32] : 32'd0;
    assign sv = (ci + 32'(dh) < 32'(DMAX)) ? tb[tb_word(ts, sa)][{sa[TEB-1:0], 5'd0} +: 32] : 32'd0;
    fp16_to_fp32 u_e (.a(xe), .y(fe));
    fp16_to_fp32 u_p (.a(xp), .y(fp));
    fp32_mul u_m1 (.a(fe), .b(cv), .y(p1));
    fp32_mul u_m2 (.a(fp), .b(sv), .y(p2));
    assign p2s = first ? {~p2[31], p2[30:0]} : p2;
    fp32_add u_add (.a(p1), .b(p2s), .y(y));
    fp32_to_fp16 u_o (.a(y), .y(y16));
    assign y_grp[16*j +: 16] = y16;
  end

  logic [2*L-1:0] gmask;
  assign gmask = ~({(2*L){1'b1}} << {c_k, 1'b0});
  logic [L*16-1:0] y_masked;
  assign y_masked = y_grp & ~({(L*16){1'b1}} << {c_k, 4'b0});
  logic [PORT_BITS-1:0]  ob_next;
  logic [PORT_BYTES-1:0] obs_next;
  assign ob_next = ob | (PORT_BITS'(y_masked) << {o_off, 4'b0});
  assign obs_next = obs | (PORT_BYTES'(gmask) << {o_off, 1'b0});

  // ---------------------------------------------------------------- buffer writes (RAMs of one write port)
  // A table response beat is one word of its slot (t_wp is a multiple of TWE; a row ends within DMAX).
  logic tw_en;
  assign tw_en = (st == S_RUN) && !err_q && rsp_fire && (rsp_tag == T_T) && (32'(t_wp) < 32'(DMAX));
  always_ff @(posedge clk) if (tw_en) tb[tb_word(t_rx_slot, XW'(t_wp))] <= rd_rsp_data[TWE*32-1:0];

  // The fill writes f_k elements at r_fill, both multiples of 8 (d, the beat and FW are; x_off starts at 0):
  // whole groups g0 .. g0 + f_k/8 - 1, at most one per bank.
  logic fw_en;
  logic [XGB-1:0] g0;
  logic [XGB:0]   ng;
  assign fw_en = (st == S_RUN) && !err_q && fill_go;
  assign g0 = XGB'(r_fill >> 3);
  assign ng = (XGB+1)'(f_k >> 3);
  for (genvar b = 0; b < XBK; b++) begin : g_xb
    logic [GE*16-1:0] mem [XBD];
    logic [XBB-1:0] rel;                          // this bank's group, counted from g0
    logic [XGB-1:0] g;
    assign rel = XBB'(b) - XBB'(g0);
    assign g = g0 + XGB'(rel);
    always_ff @(posedge clk)
      if (fw_en && (XGB+1)'(rel) < ng) mem[xb_word(fs, {g, 3'd0})] <= f_take[{rel, 7'd0} +: GE*16];
    for (genvar r = 0; r < 2 * L; r++) begin : g_rd
      assign xr_d[b][r] = mem[xr_a[r]];
    end
  end

  // ---------------------------------------------------------------- sequential
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      st <= S_IDLE; err_q <= 1'b0; code_q <= 8'd0;
      f_il <= 1'b0; f_src <= '0; f_dst <= '0; f_tab <= '0; f_m <= '0; f_h <= '0; f_d <= '0; f_pos0 <= '0;
      c_n <= '0;
      tq_rd <= '0; tq_wr <= '0; tq_n <= '0;
      x_req_addr <= '0; x_req_left <= '0; x_cred <= '0;
      t_req_addr <= '0; t_row_req_left <= '0; t_req_tok <= '0; t_free_tok <= '0; x_lim <= '0; tok_bytes <= '0;
      fx_rd <= '0; fx_wr <= '0; fx_n <= '0;
      t_valid <= '0; t_rx_slot <= '0; t_wp <= '0;
      x_full <= '0; fs <= 1'b0; r_fill <= '0; fill_rows <= '0; x_off <= '0;
      cs <= 1'b0; ts <= '0; c_head <= '0; r_c <= '0; comp_rows <= '0; o_off <= '0; o_addr <= '0;
      ob <= '0; obs <= '0; wv_q <= 1'b0; wa_q <= '0; wd_q <= '0; ws_q <= '0;
    end else begin
      if (wv_q && wr_ready) wv_q <= 1'b0;
      case (st)
        S_IDLE, S_FIN: begin
          st <= S_IDLE;
          if (start) begin
            f_il   <= insn[F_ROPE_INTERLEAVED_LO];
            f_src  <= insn[F_ROPE_SRC_LO +: 32];
            f_dst  <= insn[F_ROPE_DST_LO +: 32];
            f_tab  <= insn[F_ROPE_TABLE_LO +: 32];
            f_m    <= insn[F_ROPE_M_LO +: 32];
            f_h    <= insn[F_ROPE_HEADS_LO +: 32];
            f_d    <= insn[F_ROPE_D_LO +: 32];
            f_pos0 <= insn[F_ROPE_POS0_LO +: 32];
            c_n    <= 128'(insn[F_ROPE_M_LO +: 32]) * 128'(insn[F_ROPE_HEADS_LO +: 32]) * 128'(insn[F_ROPE_D_LO +: 32]);
            st <= S_CHK2;
          end
        end
        S_CHK2: begin
          err_q <= 1'b1;
          if (f_m == 32'd0 || f_h == 32'd0 || f_d == 32'd0) code_q <= 8'd1;
          else if (f_d[2:0] != 3'd0) code_q <= 8'd4;
          else if (64'(f_pos0) + 64'(f_m) > 64'(MAX_SEQ_LEN)) code_q <= 8'd5;
          else if (!in_region({91'd0, f_src, 5'd0}, c_n * 128'd2) || !in_region({91'd0, f_dst, 5'd0}, c_n * 128'd2)
                || !in_region({91'd0, f_tab, 5'd0} + 128'(f_pos0) * 128'(f_d) * 128'd4,
                              128'(f_m) * 128'(f_d) * 128'd4))
            code_q <= 8'd3;
          else if (f_d > 32'(DMAX)) code_q <= 8'd8;
          else begin
            err_q <= 1'b0; code_q <= 8'd0;
          end
          st <= S_RUN;
          // set up the streams (used only without error)
          tq_rd <= '0; tq_wr <= '0; tq_n <= '0;
          x_req_addr <= {27'd0, f_src, 5'd0};
          x_req_left <= (64'(c_n) * 64'd2 + 64'd31) & ~64'd31;
          x_cred <= CW'(FD);
          t_req_addr <= 64'({f_tab, 5'd0}) + 64'(f_pos0) * 64'(f_d) * 64'd4;
          // token 0's table row is the first request (responses come back in request order, and the first
          // row's compute needs it as soon as the first source beat)
          t_row_req_left <= 64'(f_d) * 64'd4; t_req_tok <= 32'd1; t_free_tok <= '0;
          tok_bytes <= 64'(f_h) * 64'(f_d) * 64'd2;
          x_lim <= {27'd0, f_src, 5'd0} + 64'(f_h) * 64'(f_d) * 64'd2;
          fx_rd <= '0; fx_wr <= '0; fx_n <= '0;
          t_valid <= '0; t_rx_slot <= '0; t_wp <= '0;
          x_full <= '0; fs <= 1'b0; r_fill <= '0; fill_rows <= 64'(f_m) * 64'(f_h); x_off <= '0;
          cs <= 1'b0; ts <= '0; c_head <= '0; r_c <= '0; comp_rows <= 64'(f_m) * 64'(f_h);
          o_off <= '0; o_addr <= {27'd0, f_dst, 5'd0}; ob <= '0; obs <= '0;
        end
        S_RUN: begin
          if (err_q) st <= S_FIN;
          else begin
            // requests
            if (req_fire) begin
              tagq[tq_wr] <= req_t ? T_T : T_X;
              tq_wr <= tq_wr + 1'b1;
              if (!req_t) begin
                x_req_addr <= x_req_addr + x_n;
                x_req_left <= x_req_left - x_n;
              end
            end
            if (req_fire && req_t) begin
              t_req_addr <= t_req_addr + t_n;
              t_row_req_left <= t_row_req_left - t_n;
            end else if (t_new_row) begin
              t_row_req_left <= 64'(f_d) * 64'd4;
              t_req_tok <= t_req_tok + 32'd1;
              x_lim <= x_lim + tok_bytes;
            end
            x_cred <= x_cred - ((req_fire && !req_t) ? x_nb : CW'(0)) + CW'(fx_pop);
            // responses
            if (rsp_fire) begin
              if (rsp_tag == T_X) begin
                fx[fx_wr] <= rd_rsp_data;
                fx_wr <= fx_wr + 1'b1;
              end else begin
                if (32'(t_wp) + 32'(TPB) >= 32'(dd)) begin   // the row's last beat
                  t_wp <= '0;
                  t_valid[t_rx_slot] <= 1'b1;
                  t_rx_slot <= t_rx_slot + TSB'(1);
                end else t_wp <= t_wp + DW'(TPB);
              end
              if (rd_rsp_last) tq_rd <= tq_rd + 1'b1;
            end
            tq_n <= tq_n + ($clog2(TQ)+1)'(req_fire) - ($clog2(TQ)+1)'(rsp_fire && rd_rsp_last);
            fx_n <= fx_n + CW'(rsp_fire && rsp_tag == T_X) - CW'(fx_pop);
            if (fx_pop) fx_rd <= fx_rd + 1'b1;
            // fill
            if (fill_go) begin
              x_off <= (32'(x_off) + 32'(f_k) == 32'(EPB)) ? '0 : x_off + EW'(f_k);
              if (fill_row_end) begin
                r_fill <= '0;
                fill_rows <= fill_rows - 64'd1;
                x_full[fs] <= 1'b1;
                fs <= !fs;
              end else r_fill <= r_fill + DW'(f_k);
            end
            // compute
            if (c_go) begin
              o_off <= (32'(o_off) + 32'(c_k) == 32'(EPB)) ? '0 : o_off + EW'(c_k);
              if (o_beat_end) begin
                wv_q <= 1'b1;
                wa_q <= MEM_AW'(o_addr);
                wd_q <= ob_next;
                ws_q <= obs_next;
                ob <= '0; obs <= '0;
                o_addr <= o_addr + 64'(PB);
              end else begin
                ob <= ob_next; obs <= obs_next;
              end
              if (c_row_end) begin
                r_c <= '0;
                comp_rows <= comp_rows - 64'd1;
                x_full[cs] <= 1'b0;
                cs <= !cs;
                if (c_head + 32'd1 == f_h) begin     // token done: free its table slot
                  c_head <= '0;
                  t_valid[ts] <= 1'b0;
                  ts <= ts + TSB'(1);
                  t_free_tok <= t_free_tok + 32'd1;
                end else c_head <= c_head + 32'd1;
              end else r_c <= r_c + DW'(c_k);
            end
            if (comp_rows == 64'd0 && !wv_q && tq_n == 0 && x_req_left == 64'd0) st <= S_FIN;
          end
        end
        default: st <= S_IDLE;
      endcase
    end
  end
endmodule
