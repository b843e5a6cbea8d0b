// frontend: the issue side of the core (doc/isa.md sections 3, 4 and 5; doc/simulator.md "Timing model").
//  * CSB register file of section 3: ID, VERSION, STATUS (bit u: unit u has an issued, not completed
//    instruction; bit 4: AUX sequencer busy; bit 5: some unit queue holds QUEUE_DEPTH not-started
//    instructions), CYCLE_LO/HI, RESULT_IDX/VAL (latched from the mvm engine's res_* pulse), RETIRED,
//    INSN0..15, INSN_PUSH, AUX_BASE_LO/HI, AUX_COUNT, AUX_START. csb_err (with the handshake) for an
//    unaligned or unknown address, a write of a read-only or a read of a write-only register; such an
//    access has no effect.
//  * AUX sequencer (section 5 rule 7): AUX_START latches AUX_BASE/AUX_COUNT (a start while a stream runs is
//    held, one deep, until the stream ends: the simulator's max(t, aux_free)); the sequencer fetches the stream
//    through its read port in requests of up to FQ/2 beats into an FQ-beat prefetch buffer (credit based:
//    rd_rsp_ready is always 1) and issues one instruction every AUX_CYCLES_PER_INSN cycles, later if the
//    instruction is not fetched yet or its unit's queue is full. Errors at AUX_START: base not 64-aligned,
//    stream not inside one region; a fetch response whose rd_rsp_last breaks the request framing.
//  * Issue stage: one instruction per cycle, from the AUX sequencer (priority) or an INSN_PUSH write (the
//    CSB write completes in the cycle the instruction issues: csb_ready is low while its queue is full).
//    Decode + legality (section 4): unknown opcode, reserved bits set (dlavm_pkg::used_bits), enum out of
//    range (enums_ok) -> sticky error, the instruction is dropped. nop/fence run here (fence: every later
//    instruction waits for the completion of everything issued before it to the units in its mask).
//  * Per-unit queues of QUEUE_DEPTH issued-not-started instructions and the start rule (section 5 rule 2):
//    the head of unit U starts when U is free (no instruction, or its done pulse this cycle), every
//    instruction issued earlier to a unit in its wait mask has completed, and every earlier fence is
//    satisfied. An instruction may start in the cycle it is issued (queue empty) and in the cycle its
//    dependency completes. Completion = the unit's done pulse delayed by the unit's *_LATENCY cycles.
//    Each queue entry keeps, per unit v, the count of v-instructions that must have completed (16-bit
//    counters, compared modulo 2^16; a requirement is dropped once met, so the wrap is harmless).
//  * After the first error (error=1) further instructions are dropped and a running stream stops; what was
//    already queued still runs, so STATUS returns to 0.
// Cycle behaviour (t = a clock cycle): issue at t (AUX, or the INSN_PUSH handshake) -> start at
// max(t, unit free, dependencies' completion, fence) -> the unit's done at busy_end -> completion at
// busy_end + LATENCY; exactly the timing model's formulas given the unit's busy time. nop/fence retire
// (RETIRED) when their wait-mask dependencies have completed (at most SEQ_SLOTS waiting at once: a further
// one stalls the issuer). error_info: see dlavm_core.sv.
module frontend import dlavm_pkg::*; (
  input  logic                                clk, rst_n,
  input  logic                                csb_valid,
  input  logic                                csb_write,
  input  logic [11:0]                         csb_addr,
  input  logic [31:0]                         csb_wdata,
  output logic                                csb_ready,
  output logic [31:0]                         csb_rdata,
  output logic                                csb_err,
  // AUX fetch read port (memory-port contract)
  output logic                                rd_req_valid,
  input  logic                                rd_req_ready,
  output logic [MEM_AW-1:0]                   rd_req_addr,
  output logic [31:0]                         rd_req_bytes,
  input  logic                                rd_rsp_valid,
  output logic                                rd_rsp_ready,
  input  logic [PORT_BITS-1:0]                rd_rsp_data,
  input  logic                                rd_rsp_last,
  // units (index UNIT_DMA, UNIT_MVM, UNIT_MAT, UNIT_SFU)
  output logic [NUM_UNITS-1:0]                u_start,
  output logic [NUM_UNITS-1:0][INSN_BITS-1:0] u_insn,
  input  logic [NUM_UNITS-1:0]                u_busy,
  input  logic [NUM_UNITS-1:0]                u_done,
  input  logic [NUM_UNITS-1:0]                u_err,
  input  logic [NUM_UNITS-1:0][7:0]           u_err_code,
  input  logic                                res_valid,
  input  logic [31:0]                         res_idx,
  input  logic [31:0]                         res_val,
  output logic                                error,
  output logic [31:0]                         error_info,
  output logic                                dbg_issue,
  output logic [7:0]                          dbg_issue_op,
  output logic [NUM_UNITS-1:0]                dbg_complete
);
  localparam int NU = NUM_UNITS;
  localparam int QD = QUEUE_DEPTH;
  localparam int QPW = (QD > 1) ? $clog2(QD) : 1;
  localparam int QCW = $clog2(QD + 1);
  localparam int CW = 16;                         // issued/completed counters (modular)
  localparam int SEQ_SLOTS = 4;                   // nop/fence waiting for their dependencies to retire
  localparam int IPB = PORT_BYTES / 64;           // instructions per fetch beat
  localparam int SUBW = (IPB > 1) ? $clog2(IPB) : 1;
  localparam int FQ = (PORT_BYTES >= 512) ? 2 : 1024 / PORT_BYTES;   // prefetch buffer, beats
  localparam int FPW = $clog2(FQ);
  localparam int FCW = $clog2(FQ + 1);
  localparam int RQB = FQ / 2;                    // beats per fetch request
  localparam int A = AUX_CYCLES_PER_INSN;
  localparam int GW = (A > 1) ? $clog2(A) : 1;
  localparam int LAT [NU] = '{DMA_LATENCY, MVM_LATENCY, MAT_LATENCY, SFU_LATENCY};

  typedef logic [NU-1:0][CW-1:0] cvec_t;

  function automatic logic sge(input logic [CW-1:0] a, input logic [CW-1:0] b);  // a >= b (mod 2^CW)
    logic [CW-1:0] d;
    d = a - b;
    return !d[CW-1];
  endfunction

  function automatic logic [NU-1:0] unmet(input logic [NU-1:0] need, input cvec_t req, input cvec_t done_cnt);
    logic [NU-1:0] r;
    for (int v = 0; v < NU; v++) r[v] = need[v] && !sge(done_cnt[v], req[v]);
    return r;
  endfunction

  function automatic logic in_one_region(input logic [63:0] a, input logic [63:0] e);  // [a, e), e >= a
    return (a - $unsigned(HBM_BASE) < $unsigned(HBM_SIZE) && e - $unsigned(HBM_BASE) <= $unsigned(HBM_SIZE))
        || (a - $unsigned(DDR_BASE) < $unsigned(DDR_SIZE) && e - $unsigned(DDR_BASE) <= $unsigned(DDR_SIZE))
        || (a - $unsigned(SRAM_BASE) < $unsigned(SRAM_SIZE) && e - $unsigned(SRAM_BASE) <= $unsigned(SRAM_SIZE));
  endfunction

  // ------------------------------------------------------------------ state
  logic [63:0]          cycle_q;
  logic [31:0]          retired_q, res_idx_q, res_val_q;
  logic [31:0]          staging_q [INSN_WORDS];
  logic [31:0]          aux_base_lo_q, aux_base_hi_q, aux_count_q;
  logic                 err_q;
  logic [31:0]          err_info_q;

  cvec_t                issued_q, completed_q, fence_tgt_q;
  logic [NU-1:0]        fence_pend_q;
  logic [NU-1:0]        occ_q;
  logic [7:0]           u_insn_op_q [NU];   // opcode of each unit's running instruction (error_info)

  logic [INSN_BITS-1:0] q_word [NU][QD];
  cvec_t                q_req  [NU][QD];
  logic [NU-1:0]        q_need [NU][QD];
  logic [QPW-1:0]       q_head [NU];
  logic [QPW-1:0]       q_tail [NU];
  logic [QCW-1:0]       q_cnt  [NU];

  logic [SEQ_SLOTS-1:0] s_valid_q;
  cvec_t                s_req_q  [SEQ_SLOTS];
  logic [NU-1:0]        s_need_q [SEQ_SLOTS];

  // AUX sequencer
  logic                 aux_run_q, aux_pend_q;
  logic [63:0]          aux_pbase_q;
  logic [31:0]          aux_pcount_q;
  logic [31:0]          aux_iss_left_q, aux_req_left_q;
  logic [MEM_AW-1:0]    aux_req_addr_q;
  logic [GW-1:0]        aux_gap_q;
  logic [SUBW-1:0]      aux_sub_q;
  logic [PORT_BITS-1:0] fq_mem [FQ];
  logic [FPW-1:0]       fq_rd_q, fq_wr_q;
  logic [FCW-1:0]       fq_cnt_q;
  logic [31:0]          fq_out_q;   // beats requested, not yet received
  logic [31:0]          rsp_cnt_q;  // beats received of the oldest outstanding request

  // ------------------------------------------------------------------ completion (done + LATENCY)
  logic [NU-1:0] comp;
  for (genvar u = 0; u < NU; u++) begin : g_lat
    if (LAT[u] == 0) begin : g_zero
      assign comp[u] = u_done[u];
    end else if (LAT[u] == 1) begin : g_one
      logic sh_q;
      always_ff @(posedge clk or negedge rst_n) begin
        if (!rst_n) sh_q <= 1'b0;
        else        sh_q <= u_done[u];
      end
      assign comp[u] = sh_q;
    end else begin : g_pipe
      logic [LAT[u]-1:0] sh_q;
      always_ff @(posedge clk or negedge rst_n) begin
        if (!rst_n) sh_q <= '0;
        else        sh_q <= {sh_q[LAT[u]-2:0], u_done[u]};
      end
      assign comp[u] = sh_q[LAT[u]-1];
    end
  end
  assign dbg_complete = comp;

  cvec_t completed_nxt;
  always_comb
    for (int v = 0; v < NU; v++) completed_nxt[v] = completed_q[v] + CW'(comp[v]);

  // ------------------------------------------------------------------ CSB decode
  logic        a_ok, is_stage, is_push, is_ro, is_rw, is_wo, is_auxstart;
  logic [3:0]  stage_idx;
  always_comb begin
    stage_idx = csb_addr[5:2];
    is_stage  = csb_addr[11:6] == 6'h01;
    is_push   = csb_addr == REG_INSN_PUSH;
    is_auxstart = csb_addr == REG_AUX_START;
    is_ro = csb_addr inside {REG_ID, REG_VERSION, REG_STATUS, REG_CYCLE_LO, REG_CYCLE_HI, REG_RESULT_IDX,
                             REG_RESULT_VAL, REG_RETIRED};
    is_rw = is_stage || csb_addr inside {REG_AUX_BASE_LO, REG_AUX_BASE_HI, REG_AUX_COUNT};
    is_wo = is_push || is_auxstart;
    a_ok  = (csb_addr[1:0] == 2'b00)
            && (csb_write ? (is_rw || is_wo) : (is_rw || is_ro));
  end
  assign csb_err = !a_ok;

  // ------------------------------------------------------------------ issue source
  logic                 aux_busy;
  logic                 aux_avail;
  logic [INSN_BITS-1:0] aux_word, host_word, iss_word;
  logic                 host_push;
  logic                 iss_valid, iss_from_aux;
  always_comb begin
    for (int i = 0; i < INSN_WORDS; i++) host_word[32*i +: 32] = staging_q[i];
    aux_word  = fq_mem[fq_rd_q][32'(aux_sub_q) * INSN_BITS +: INSN_BITS];
    aux_avail = aux_run_q && fq_cnt_q != 0 && aux_gap_q == '0;
    host_push = csb_valid && csb_write && is_push && a_ok;
    iss_from_aux = aux_avail;
    iss_valid = aux_avail || host_push;
    iss_word  = aux_avail ? aux_word : host_word;
  end

  // decode
  logic [7:0]    d_op;
  logic [NU-1:0] d_wait;
  logic          d_legal, d_is_seq, d_is_fence;
  logic [1:0]    d_unit;
  logic [7:0]    d_code;
  always_comb begin
    int un;
    d_op   = iss_word[7:0];
    d_wait = iss_word[8 +: NU];
    un     = unit_of(d_op);
    d_is_seq   = un < 0;
    d_is_fence = d_op == OP_FENCE;
    d_unit     = un[1:0];
    if (!known_opcode(d_op))                         d_code = 8'd1;
    else if ((iss_word & ~used_bits(d_op)) != '0)    d_code = 8'd2;
    else if (!enums_ok(iss_word))                    d_code = 8'd3;
    else                                             d_code = 8'd0;
    d_legal = d_code == 8'd0;
  end

  // requirement vector of the incoming instruction (units in its mask: all issued so far; others: fences)
  cvec_t         inc_req;
  logic [NU-1:0] inc_need, inc_unmet;
  always_comb begin
    for (int v = 0; v < NU; v++) begin
      inc_need[v] = d_wait[v] | (fence_pend_q[v] & !d_is_seq);
      inc_req[v]  = d_wait[v] ? issued_q[v] : fence_tgt_q[v];
    end
    inc_unmet = unmet(inc_need, inc_req, completed_nxt);
  end

  // ------------------------------------------------------------------ start rule
  logic [NU-1:0] unit_free, head_start, byp_start, q_full;
  always_comb begin
    for (int u = 0; u < NU; u++) begin
      unit_free[u]  = !(occ_q[u] || u_busy[u]) || u_done[u];
      head_start[u] = unit_free[u] && q_cnt[u] != '0
                      && unmet(q_need[u][q_head[u]], q_req[u][q_head[u]], completed_nxt) == '0;
      q_full[u]     = q_cnt[u] == QCW'(QD);
    end
  end

  // seq slots
  logic [SEQ_SLOTS-1:0] s_done;
  logic                 s_free_any;
  logic [$clog2(SEQ_SLOTS)-1:0] s_free_idx;
  always_comb begin
    s_free_any = 1'b0;
    s_free_idx = '0;
    for (int i = SEQ_SLOTS - 1; i >= 0; i--)
      if (!s_valid_q[i]) begin s_free_any = 1'b1; s_free_idx = i[$clog2(SEQ_SLOTS)-1:0]; end
    for (int i = 0; i < SEQ_SLOTS; i++)
      s_done[i] = s_valid_q[i] && unmet(s_need_q[i], s_req_q[i], completed_nxt) == '0;
  end

  // accept / fire
  logic iss_accept, iss_fire, iss_issue, iss_seq_now, iss_seq_slot;
  always_comb begin
    if (err_q || !d_legal)  iss_accept = 1'b1;                      // dropped
    else if (d_is_seq)      iss_accept = inc_unmet == '0 || s_free_any;
    else                    iss_accept = !q_full[d_unit] || head_start[d_unit];
    iss_fire     = iss_valid && iss_accept;
    iss_issue    = iss_fire && !err_q && d_legal;                    // really issued
    iss_seq_now  = iss_issue && d_is_seq && inc_unmet == '0;         // nop/fence retiring at issue
    iss_seq_slot = iss_issue && d_is_seq && inc_unmet != '0;
  end
  assign dbg_issue    = iss_issue;
  assign dbg_issue_op = d_op;

  always_comb begin
    for (int u = 0; u < NU; u++) begin
      byp_start[u] = iss_issue && !d_is_seq && d_unit == u[1:0] && q_cnt[u] == '0 && unit_free[u]
                     && inc_unmet == '0;
      u_start[u]   = head_start[u] || byp_start[u];
      u_insn[u]    = (q_cnt[u] != '0) ? q_word[u][q_head[u]] : iss_word;
    end
  end

  // ------------------------------------------------------------------ CSB handshake
  logic aux_start_wr, aux_start_go;
  always_comb begin
    aux_start_wr = csb_valid && csb_write && is_auxstart && a_ok;
    if (!a_ok)            csb_ready = 1'b1;
    else if (host_push)   csb_ready = !iss_from_aux && iss_accept;
    else if (aux_start_wr) csb_ready = !aux_pend_q;
    else                  csb_ready = 1'b1;
  end
  logic csb_wr_fire;
  assign csb_wr_fire = csb_valid && csb_ready && csb_write && a_ok;

  // read data
  logic [31:0] retire_inc;
  always_comb begin
    retire_inc = 32'($countones(comp)) + 32'($countones(s_done)) + 32'(iss_seq_now);
  end
  always_comb begin
    logic [NU-1:0] ubusy;
    for (int v = 0; v < NU; v++) ubusy[v] = issued_q[v] != completed_nxt[v];
    csb_rdata = '0;
    if (is_stage) csb_rdata = staging_q[stage_idx];
    else unique case (csb_addr)
      REG_ID:          csb_rdata = DEVICE_ID;
      REG_VERSION:     csb_rdata = ISA_VERSION;
      REG_STATUS:      csb_rdata = 32'({(|(q_full & ~head_start)), aux_busy, ubusy});
      REG_CYCLE_LO:    csb_rdata = cycle_q[31:0];
      REG_CYCLE_HI:    csb_rdata = cycle_q[63:32];
      REG_RESULT_IDX:  csb_rdata = res_idx_q;
      REG_RESULT_VAL:  csb_rdata = res_val_q;
      REG_RETIRED:     csb_rdata = retired_q + retire_inc;
      REG_AUX_BASE_LO: csb_rdata = aux_base_lo_q;
      REG_AUX_BASE_HI: csb_rdata = aux_base_hi_q;
      REG_AUX_COUNT:   csb_rdata = aux_count_q;
      default:         csb_rdata = '0;
    endcase
  end

  // ------------------------------------------------------------------ AUX sequencer
  // a stream starts when AUX_START is written while idle, or from the pending slot when the sequencer idles
  logic [63:0] go_base;
  logic [31:0] go_count;
  logic [63:0] go_end;
  logic        go_aligned, go_inside, go_valid;
  always_comb begin
    aux_busy     = aux_run_q || aux_pend_q || aux_gap_q != '0 || fq_out_q != '0;
    aux_start_go = 1'b0;
    go_base  = {aux_base_hi_q, aux_base_lo_q};
    go_count = aux_count_q;
    if (aux_pend_q && !aux_run_q && aux_gap_q == '0 && fq_out_q == '0) begin
      aux_start_go = 1'b1; go_base = aux_pbase_q; go_count = aux_pcount_q;
    end else if (aux_start_wr && csb_ready && !aux_busy) begin
      aux_start_go = 1'b1;
    end
    go_end     = go_base + {26'd0, go_count, 6'd0};
    go_aligned = go_base[5:0] == 6'd0;
    go_inside  = go_count == 32'd0 || in_one_region(go_base, go_end);
    go_valid   = aux_start_go && !err_q && go_aligned && go_inside && go_count != 32'd0;
  end

  // fetch requests (credits: buffered + outstanding beats <= FQ)
  logic [31:0] rq_insns, rq_beats;
  logic        rsp_exp_last, rsp_bad;
  logic        rq_fire, rsp_fire, fq_push, fq_pop, aux_iss_fire;
  always_comb begin
    rq_insns = (aux_req_left_q > 32'(RQB * IPB)) ? 32'(RQB * IPB) : aux_req_left_q;
    rq_beats = (rq_insns + 32'(IPB - 1)) / 32'(IPB);
    rd_req_valid = aux_run_q && !err_q && aux_req_left_q != 0
                   && (32'(fq_cnt_q) + fq_out_q + rq_beats <= 32'(FQ));
    rd_req_addr  = aux_req_addr_q;
    rd_req_bytes = {rq_insns[25:0], 6'd0};
    rq_fire      = rd_req_valid && rd_req_ready;
    rd_rsp_ready = 1'b1;
    rsp_fire     = rd_rsp_valid;
    fq_push      = rsp_fire && aux_run_q && !err_q;
    // framing check: every request but a stream's last has RQB beats
    rsp_exp_last = rsp_cnt_q == 32'(RQB - 1) || (fq_out_q == 32'd1 && aux_req_left_q == 32'd0);
    rsp_bad      = rsp_fire && (rd_rsp_last != rsp_exp_last);
    aux_iss_fire = iss_fire && iss_from_aux;
    fq_pop       = aux_iss_fire && (aux_sub_q == SUBW'(IPB - 1) || aux_iss_left_q == 32'd1);
  end

  // ------------------------------------------------------------------ error capture
  logic        new_err;
  logic [31:0] new_info;
  always_comb begin
    new_err = 1'b0;
    new_info = '0;
    for (int u = NU - 1; u >= 0; u--)
      if (u_done[u] && u_err[u]) begin
        new_err = 1'b1;
        new_info = {8'd0, u_err_code[u], 5'd0, 3'(u), u_insn_op_q[u]};
      end
    if (!new_err && iss_fire && !err_q && !d_legal) begin
      new_err = 1'b1; new_info = {8'd0, d_code, 5'd0, 3'd4, d_op};
    end
    if (!new_err && rsp_bad && !err_q) begin
      new_err = 1'b1; new_info = {8'd0, 8'd6, 5'd0, 3'd4, 8'd0};
    end
    if (!new_err && aux_start_go && !err_q && !go_aligned) begin
      new_err = 1'b1; new_info = {8'd0, 8'd4, 5'd0, 3'd4, 8'd0};
    end
    if (!new_err && aux_start_go && !err_q && go_aligned && !go_inside) begin
      new_err = 1'b1; new_info = {8'd0, 8'd5, 5'd0, 3'd4, 8'd0};
    end
  end
  assign error      = err_q;
  assign error_info = err_info_q;

  // ------------------------------------------------------------------ sequential
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      cycle_q <= '0; retired_q <= '0; res_idx_q <= '0; res_val_q <= '0;
      for (int i = 0; i < INSN_WORDS; i++) staging_q[i] <= '0;
      aux_base_lo_q <= '0; aux_base_hi_q <= '0; aux_count_q <= '0;
      err_q <= 1'b0; err_info_q <= '0;
      issued_q <= '0; completed_q <= '0; fence_tgt_q <= '0; fence_pend_q <= '0; occ_q <= '0;
      for (int u = 0; u < NU; u++) begin
        q_head[u] <= '0; q_tail[u] <= '0; q_cnt[u] <= '0; u_insn_op_q[u] <= '0;
      end
      s_valid_q <= '0;
      aux_run_q <= 1'b0; aux_pend_q <= 1'b0; aux_pbase_q <= '0; aux_pcount_q <= '0;
      aux_iss_left_q <= '0; aux_req_left_q <= '0; aux_req_addr_q <= '0; aux_gap_q <= '0; aux_sub_q <= '0;
      fq_rd_q <= '0; fq_wr_q <= '0; fq_cnt_q <= '0; fq_out_q <= '0; rsp_cnt_q <= '0;
    end else begin
      cycle_q   <= cycle_q + 64'd1;
      retired_q <= retired_q + retire_inc;
      if (res_valid) begin res_idx_q <= res_idx; res_val_q <= res_val; end

      // CSB writes
      if (csb_wr_fire) begin
        if (is_stage) staging_q[stage_idx] <= csb_wdata;
        if (csb_addr == REG_AUX_BASE_LO) aux_base_lo_q <= csb_wdata;
        if (csb_addr == REG_AUX_BASE_HI) aux_base_hi_q <= csb_wdata;
        if (csb_addr == REG_AUX_COUNT)   aux_count_q   <= csb_wdata;
      end

      if (new_err && !err_q) begin err_q <= 1'b1; err_info_q <= new_info; end

      // counters, occupancy
      for (int u = 0; u < NU; u++) begin
        completed_q[u] <= completed_nxt[u];
        if (iss_issue && !d_is_seq && d_unit == u[1:0]) issued_q[u] <= issued_q[u] + CW'(1);
        if (u_start[u]) begin
          occ_q[u] <= 1'b1;
          u_insn_op_q[u] <= u_insn[u][7:0];
        end else if (u_done[u]) occ_q[u] <= 1'b0;
      end

      // fences
      for (int v = 0; v < NU; v++) begin
        if (iss_issue && d_is_fence && d_wait[v]) begin
          fence_pend_q[v] <= 1'b1;
          fence_tgt_q[v]  <= issued_q[v];
        end else if (fence_pend_q[v] && sge(completed_nxt[v], fence_tgt_q[v])) begin
          fence_pend_q[v] <= 1'b0;
        end
      end

      // queues: clear met requirements, pop, push
      for (int u = 0; u < NU; u++) begin
        logic push;
        push = iss_issue && !d_is_seq && d_unit == u[1:0] && !byp_start[u];
        if (push) begin
          q_tail[u] <= (q_tail[u] == QPW'(QD - 1)) ? '0 : q_tail[u] + QPW'(1);
        end
        if (head_start[u]) q_head[u] <= (q_head[u] == QPW'(QD - 1)) ? '0 : q_head[u] + QPW'(1);
        q_cnt[u] <= q_cnt[u] + QCW'(push) - QCW'(head_start[u]);
      end

      // seq slots
      for (int i = 0; i < SEQ_SLOTS; i++)
        if (s_done[i]) s_valid_q[i] <= 1'b0;
      if (iss_seq_slot) s_valid_q[s_free_idx] <= 1'b1;

      // AUX sequencer
      if (aux_start_wr && csb_ready && aux_busy) begin
        aux_pend_q <= 1'b1;
        aux_pbase_q <= {aux_base_hi_q, aux_base_lo_q};
        aux_pcount_q <= aux_count_q;
      end else if (aux_start_go && aux_pend_q) begin
        aux_pend_q <= 1'b0;
      end
      if (go_valid) begin
        aux_run_q      <= 1'b1;
        aux_iss_left_q <= go_count;
        aux_req_left_q <= go_count;
        aux_req_addr_q <= go_base[MEM_AW-1:0];
        aux_sub_q      <= '0;
      end
      if (rq_fire) begin
        aux_req_addr_q <= aux_req_addr_q + MEM_AW'({rq_insns, 6'd0});
        aux_req_left_q <= aux_req_left_q - rq_insns;
      end
      fq_out_q <= fq_out_q + (rq_fire ? rq_beats : 32'd0) - 32'(rsp_fire);
      if (rsp_fire) rsp_cnt_q <= rd_rsp_last ? 32'd0 : rsp_cnt_q + 32'd1;
      if (fq_push) begin
        fq_wr_q <= (fq_wr_q == FPW'(FQ - 1)) ? '0 : fq_wr_q + FPW'(1);
      end
      if (fq_pop) fq_rd_q <= (fq_rd_q == FPW'(FQ - 1)) ? '0 : fq_rd_q + FPW'(1);
      fq_cnt_q <= fq_cnt_q + FCW'(fq_push) - FCW'(fq_pop);
      if (aux_iss_fire) begin
        aux_iss_left_q <= aux_iss_left_q - 32'd1;
        aux_sub_q <= fq_pop ? '0 : aux_sub_q + SUBW'(1);
        if (aux_iss_left_q == 32'd1) aux_run_q <= 1'b0;
      end
      if (aux_iss_fire) aux_gap_q <= GW'(A - 1);
      else if (aux_gap_q != '0) aux_gap_q <= aux_gap_q - GW'(1);
      // the first error stops the stream; outstanding beats still drain (fq_out_q)
      if (err_q || (new_err && !err_q)) begin
        aux_run_q <= 1'b0; aux_pend_q <= 1'b0; aux_iss_left_q <= '0; aux_req_left_q <= '0;
        fq_cnt_q <= '0; fq_rd_q <= '0; fq_wr_q <= '0; aux_sub_q <= '0;
      end
    end
  end

  // storage without reset (entries are written before they are valid)
  always_ff @(posedge clk) begin
    for (int u = 0; u < NU; u++) begin
      for (int e = 0; e < QD; e++)
        q_need[u][e] <= unmet(q_need[u][e], q_req[u][e], completed_nxt);
      if (iss_issue && !d_is_seq && d_unit == u[1:0] && !byp_start[u]) begin
        q_word[u][q_tail[u]] <= iss_word;
        q_req[u][q_tail[u]]  <= inc_req;
        q_need[u][q_tail[u]] <= inc_unmet;
      end
    end
    for (int i = 0; i < SEQ_SLOTS; i++)
      s_need_q[i] <= unmet(s_need_q[i], s_req_q[i], completed_nxt);
    if (iss_seq_slot) begin
      s_need_q[s_free_idx] <= inc_unmet;
      s_req_q[s_free_idx]  <= inc_req;
    end
    if (fq_push) fq_mem[fq_wr_q] <= rd_rsp_data;
  end
endmodule
