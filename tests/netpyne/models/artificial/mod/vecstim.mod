: VecStim: an artificial cell that fires at the times held in a Vector (play(vec)).
: Written for cosim's tests after NEURON's own example of the same name
: (nrn share/examples/nrniv/netcon/vecevent.mod, BSD-3-Clause), which NetPyNE's tutorials ship.
NEURON {
    THREADSAFE
    ARTIFICIAL_CELL VecStim
    BBCOREPOINTER ptr
}

ASSIGNED {
    index
    etime (ms)
    ptr
}

INITIAL {
    index = 0
    element()
    if (index > 0) {
        net_send(etime - t, 1)
    }
}

NET_RECEIVE (w) {
    if (flag == 1) {
        net_event(t)
        element()
        if (index > 0) {
            net_send(etime - t, 1)
        }
    }
}

DESTRUCTOR {
VERBATIM
    IvocVect* vv = (IvocVect*)(_p_ptr);
    if (vv) { hoc_obj_unref(*vector_pobj(vv)); }
ENDVERBATIM
}

PROCEDURE element() {
VERBATIM
    int i = (int)index;
    IvocVect* vv = (IvocVect*)(_p_ptr);
    if (i >= 0 && vv && i < vector_capacity(vv)) {
        etime = vector_vec(vv)[i];
        index += 1.;
    } else {
        index = -1.;
    }
ENDVERBATIM
}

PROCEDURE play() {
VERBATIM
    IvocVect* ptmp = NULL;
    if (ifarg(1)) {
        ptmp = vector_arg(1);
        hoc_obj_ref(*vector_pobj(ptmp));
    }
    IvocVect* old = (IvocVect*)(_p_ptr);
    if (old) { hoc_obj_unref(*vector_pobj(old)); }
    _p_ptr = (void*)ptmp;
ENDVERBATIM
}

VERBATIM
static void bbcore_write(double* x, int* d, int* xx, int* offset, _threadargsproto_) {}
static void bbcore_read(double* x, int* d, int* xx, int* offset, _threadargsproto_) {}
ENDVERBATIM
