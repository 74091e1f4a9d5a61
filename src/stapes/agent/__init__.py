"""The guest agent of Stapes VMs and the protocol it speaks with stapesd."""
