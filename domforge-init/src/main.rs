//! domforge-init: skeleton; issue 6 fills it (decode the boot blob, build PVH guests through domctl,
//! relay their consoles, supervise them).
fn main() {}
